#!/usr/bin/env python3
"""A version-1 omnid client, kept as tools/examples/client.py was before protocol 2: the integration test
Protocol2.AVersion1ClientFromTheOldExamplesStillWorks runs it against today's omnid. Uses pyzmq.

    client.py status
    client.py ask "What is the capital of France?" [--wav q.wav] [--speak]
    client.py events [TOPIC ...]

Endpoints: $OMNID_CONTROL / $OMNID_EVENTS, else ipc:///run/omnid/control.sock and .../events.sock.
"""
import argparse
import json
import os
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

CONTROL = os.environ.get("OMNID_CONTROL", "ipc:///run/omnid/control.sock")
EVENTS = os.environ.get("OMNID_EVENTS", "ipc:///run/omnid/events.sock")


class Omnid:
    def __init__(self, ctx, timeout_ms=5000):
        self.ctx = ctx
        self.timeout_ms = timeout_ms
        self.next_id = 1
        self.control = ctx.socket(zmq.DEALER)
        self.control.linger = 0
        self.control.connect(CONTROL)

    def request(self, cmd, wav=None, **fields):
        """Sends one request and returns the reply (a dict with "ok"). Raises TimeoutError."""
        request_id = self.next_id
        self.next_id += 1
        frames = [json.dumps({"id": request_id, "cmd": cmd, **fields}).encode()]
        if wav is not None:
            frames.append(wav)
        self.control.send_multipart(frames)
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.control.poll(int(left * 1000)):
                raise TimeoutError(f"no reply from omnid at {CONTROL} within {self.timeout_ms} ms")
            reply = json.loads(self.control.recv_multipart()[-1])
            if reply.get("id") == request_id:  # skip late replies to earlier requests
                return reply

    def subscribe(self, topics):
        """A SUB socket that is connected (handshake done) when this returns, so no event after it is missed."""
        sub = self.ctx.socket(zmq.SUB)
        sub.linger = 0
        for topic in topics or [""]:
            sub.setsockopt_string(zmq.SUBSCRIBE, topic)
        monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        sub.connect(EVENTS)
        if monitor.poll(self.timeout_ms):
            recv_monitor_message(monitor)
            time.sleep(0.02)  # let the publisher's I/O thread register the subscription
        else:
            print(f"warning: no handshake with {EVENTS} yet", file=sys.stderr)
        sub.disable_monitor()
        monitor.close()
        return sub


def read_event(sub, timeout_ms):
    if not sub.poll(timeout_ms):
        return None, None
    topic, body = sub.recv_multipart()
    return topic.decode(), json.loads(body)


def fail(reply):
    err = reply["error"]
    print(f"error {err['code']}: {err['message']}", file=sys.stderr)
    return 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status")
    ask = sub.add_parser("ask")
    ask.add_argument("text", nargs="?")
    ask.add_argument("--wav", help="WAV file with the question")
    ask.add_argument("--speak", action="store_true", help="also speak the answer")
    events = sub.add_parser("events")
    events.add_argument("topics", nargs="*")
    args = parser.parse_args()

    path = CONTROL[len("ipc://"):] if CONTROL.startswith("ipc://") else None
    if path and not os.path.exists(path):
        print(f"omnid is not running (no socket at {path})", file=sys.stderr)
        return 3

    ctx = zmq.Context()
    omnid = Omnid(ctx)
    try:
        if args.command == "status":
            reply = omnid.request("status")
            if not reply["ok"]:
                return fail(reply)
            print(json.dumps(reply, indent=2))
            return 0

        if args.command == "events":
            sub = omnid.subscribe(args.topics)
            while True:
                topic, body = read_event(sub, 1000)
                if topic:
                    print(json.dumps({"event": topic, **body}), flush=True)

        # ask: subscribe first, then send, then follow the turn's events.
        if not args.text and not args.wav:
            parser.error("ask needs TEXT or --wav")
        sub = omnid.subscribe(["response.", "turn.cancelled", "error"])
        fields = {"speak": args.speak}
        if args.text:
            fields["text"] = args.text
        wav = open(args.wav, "rb").read() if args.wav else None
        reply = omnid.request("ask", wav=wav, **fields)
        if not reply["ok"]:
            return fail(reply)
        turn_id = reply["turn_id"]
        while True:
            topic, event = read_event(sub, 30000)
            if topic is None:
                print("\nno events for 30 s", file=sys.stderr)
                return 3
            if event.get("turn_id") != turn_id:
                continue
            if topic == "response.delta":
                print(event["text"], end="", flush=True)
            elif topic == "response.done":
                print()
                return 0
            elif topic in ("turn.cancelled", "error"):
                print(f"\n{topic}: {event}", file=sys.stderr)
                return 1
    except TimeoutError as e:
        print(e, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 0
    finally:
        ctx.destroy(linger=0)


if __name__ == "__main__":
    sys.exit(main())
