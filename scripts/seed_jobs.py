#!/usr/bin/env python3
"""Creates COUNT suspended download jobs quickly through the service's API on its Unix socket
(scripts/bench-gui.sh: the window with 10,000 jobs). Each job has one file BASE/NAME.
  scripts/seed_jobs.py SOCKET COUNT BASE_URL FOLDER"""
import http.client
import json
import socket
import sys


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def main():
    sock, count, base, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    connection = UnixConnection(sock)
    for i in range(count):
        name = f"seeded-{i:05}.bin"
        spec = {
            "name": name,
            "files": [{"remote_url": f"{base}/{name}", "local_path": f"{folder}/{name}"}],
        }
        connection.request("POST", "/v1/jobs", json.dumps(spec), {"Content-Type": "application/json"})
        answer = connection.getresponse()
        body = answer.read()
        if answer.status >= 300:
            sys.exit(f"job {i}: {answer.status} {body.decode(errors='replace')}")


if __name__ == "__main__":
    main()
