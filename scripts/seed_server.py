#!/usr/bin/env python3
"""A loopback HTTP server for scripts/screenshots.sh: /slow/NAME?size=N&rate=R streams N bytes at
R bytes per second on each connection, with ranges (so that jobs stay TRANSFERRING while the
screenshot is taken, the FOREGROUND one over several connections), /fast/NAME
sends 2 MB at once, anything else is a 404. Prints its port, then serves until killed."""
import http.server
import socketserver
import sys
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path.startswith("/slow/"):
            size = int(query.get("size", ["4000000000"])[0])
            rate = int(query.get("rate", ["2000000"])[0])
        elif url.path.startswith("/fast/"):
            size, rate = 2_000_000, 0
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = 0, size  # end: one past the last byte sent
        wanted = self.headers.get("Range", "")
        first, _, last = wanted[6:].partition("-")
        if wanted.startswith("bytes=") and first.isdigit():
            start = int(first)
            if last.isdigit():
                end = min(int(last) + 1, size)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", "Wed, 21 Oct 2026 07:28:00 GMT")
        self.end_headers()
        chunk = bytes(64 * 1024)
        sent = start
        try:
            while sent < end:
                n = min(len(chunk), end - sent)
                self.wfile.write(chunk[:n])
                sent += n
                if rate:
                    time.sleep(n / rate)
        except (BrokenPipeError, ConnectionResetError):
            pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
