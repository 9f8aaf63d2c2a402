"""Handle one video message as the original converter does, with its libraries.

Takes one message from the video queue (waiting up to --wait seconds for it),
reads the video it names from GridFS of the videos database, stores the given
MP3 file (the conversion itself is not the point: ffmpeg made it beforehand)
in GridFS of the mp3s database under a new id with no metadata, sets the
message's mp3_fid to that id and publishes the message on the mp3 queue
(default exchange, routing key = queue name, persistent), then acks the
video message. Prints the MP3's id.

Written from the suite's documented contract (README.md) (not from the original's code) for
internal/e2e/original_test.go. Run with Debian's /usr/bin/python3.
"""

import argparse
import json
import sys
import time

import bson
import gridfs
import pika
import pymongo

p = argparse.ArgumentParser(description="convert one video message as the original converter does")
p.add_argument("--mongodb-uri", required=True)
p.add_argument("--videos-db", required=True)
p.add_argument("--mp3s-db", required=True)
p.add_argument("--amqp-url", required=True)
p.add_argument("--video-queue", required=True, help="VIDEO_QUEUE")
p.add_argument("--mp3-queue", required=True, help="MP3_QUEUE")
p.add_argument("--wait", type=float, default=30, help="seconds to wait for a video message")
p.add_argument("mp3")
a = p.parse_args()

conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
channel = conn.channel()
deadline = time.monotonic() + a.wait
while True:
    method, _, body = channel.basic_get(queue=a.video_queue, auto_ack=False)
    if method is not None:
        break
    if time.monotonic() > deadline:
        sys.exit(f"no message on {a.video_queue} within {a.wait} s")
    time.sleep(0.1)

message = json.loads(body)
mongo = pymongo.MongoClient(a.mongodb_uri, serverSelectionTimeoutMS=10000)
video = gridfs.GridFS(mongo[a.videos_db]).get(bson.ObjectId(message["video_fid"])).read()
if not video:
    sys.exit(f"video {message['video_fid']} is empty")
with open(a.mp3, "rb") as f:
    fid = gridfs.GridFS(mongo[a.mp3s_db]).put(f)

message["mp3_fid"] = str(fid)
# Confirms and mandatory are this test's own checks (see gateway_upload.py).
channel.confirm_delivery()
channel.basic_publish(
    exchange="",
    routing_key=a.mp3_queue,
    body=json.dumps(message),
    properties=pika.BasicProperties(delivery_mode=pika.spec.PERSISTENT_DELIVERY_MODE),
    mandatory=True,
)
channel.basic_ack(delivery_tag=method.delivery_tag)
conn.close()
mongo.close()
print(fid)
