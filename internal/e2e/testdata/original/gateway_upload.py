"""Upload a video as the original gateway does, with its libraries.

Stores the file in GridFS (bucket fs) of the videos database with pymongo's
gridfs.GridFS(db).put, without filename or metadata, then publishes
{"video_fid": "<hex>", "mp3_fid": null, "username": "<email>"} with pika on
the default exchange, routing key = the video queue's name, persistent
(delivery_mode 2). Prints the video's id.

Written from the suite's documented contract (README.md) (not from the original's code) for
internal/e2e/original_test.go. Run with Debian's /usr/bin/python3.
"""

import argparse
import json

import gridfs
import pika
import pymongo

p = argparse.ArgumentParser(description="upload a video as the original gateway does")
p.add_argument("--mongodb-uri", required=True)
p.add_argument("--db", required=True, help="the videos database")
p.add_argument("--amqp-url", required=True)
p.add_argument("--queue", required=True, help="VIDEO_QUEUE")
p.add_argument("--username", required=True, help="the uploader's email")
p.add_argument("file")
a = p.parse_args()

mongo = pymongo.MongoClient(a.mongodb_uri, serverSelectionTimeoutMS=10000)
with open(a.file, "rb") as f:
    fid = gridfs.GridFS(mongo[a.db]).put(f)

message = {"video_fid": str(fid), "mp3_fid": None, "username": a.username}
conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
channel = conn.channel()
# Publisher confirms and mandatory are this test's own checks, not the
# original's: a message the broker cannot route fails here (UnroutableError)
# instead of as a missing email later. The consumer sees the same message.
channel.confirm_delivery()
channel.basic_publish(
    exchange="",
    routing_key=a.queue,
    body=json.dumps(message),
    properties=pika.BasicProperties(delivery_mode=pika.spec.PERSISTENT_DELIVERY_MODE),
    mandatory=True,
)
conn.close()
mongo.close()
print(fid)
