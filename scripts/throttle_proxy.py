#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that forwards to 127.0.0.1:UPSTREAM at most RATE bytes per second per
direction and connection, so that transfers last long enough to be interrupted (scripts/
crash-test.sh). Usage: throttle_proxy.py UPSTREAM_PORT RATE. Prints its port, serves until killed."""
import socket
import sys
import threading
import time

upstream_port, rate = int(sys.argv[1]), int(sys.argv[2])


def pump(src, dst):
    try:
        while True:
            data = src.recv(64 * 1024)
            if not data:
                break
            dst.sendall(data)
            time.sleep(len(data) / rate)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client):
    try:
        upstream = socket.create_connection(("127.0.0.1", upstream_port))
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)
sys.stdout.close()
while True:
    conn, _ = listener.accept()
    serve(conn)
