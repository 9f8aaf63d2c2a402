"""Read a GridFS file by id with pymongo's GridFS, as the original's services do.

Prints {"length": <files document's length>, "read": <bytes read>,
"sha256": "<hex of the bytes read>"} as JSON.

Written for internal/e2e/original_test.go. Run with Debian's /usr/bin/python3.
"""

import argparse
import hashlib
import json

import bson
import gridfs
import pymongo

p = argparse.ArgumentParser(description="read a GridFS file with pymongo")
p.add_argument("--mongodb-uri", required=True)
p.add_argument("--db", required=True)
p.add_argument("fid")
a = p.parse_args()

mongo = pymongo.MongoClient(a.mongodb_uri, serverSelectionTimeoutMS=10000)
out = gridfs.GridFS(mongo[a.db]).get(bson.ObjectId(a.fid))
h, n = hashlib.sha256(), 0
while chunk := out.read(1 << 20):
    h.update(chunk)
    n += len(chunk)
print(json.dumps({"length": out.length, "read": n, "sha256": h.hexdigest()}))
