#!/usr/bin/env python3
"""Example omnid client (control protocol 2, docs/protocol.md) on the omnid_client module in clients/python
(`pip install clients/python`; run from the source tree it is found without installing). Needs pyzmq.

    client.py status
    client.py ask "What is the capital of France?" [--wav q.wav] [--speak]
    client.py events [TOPIC ...]

Endpoints: $OMNID_CONTROL / $OMNID_EVENTS, else ipc:///run/omnid/control.sock and .../events.sock.
"""
import argparse
import json
import os
import sys

try:
    import omnid_client
except ImportError:  # not installed: the copy in this source tree
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
    import omnid_client


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

    try:
        with omnid_client.Client() as omnid:
            if args.command == "status":
                print(json.dumps(omnid.request("status"), indent=2))
                return 0
            if args.command == "events":
                for name, body in omnid.events(args.topics):
                    print(json.dumps({"event": name, **body}), flush=True)
            if not args.text and not args.wav:
                parser.error("ask needs TEXT or --wav")
            # The stream starts at the daemon's current seq: the turn's events cannot be missed, even those
            # published before the subscription is connected.
            stream = omnid.events(["response.", "speech.", "turn.", "error"])
            fields = {"speak": args.speak}
            if args.text:
                fields["text"] = args.text
            wav = open(args.wav, "rb").read() if args.wav else None
            turn_id = omnid.request("ask", binary=wav, **fields)["turn_id"]
            for name, event in stream.turn(turn_id, speak=args.speak):
                if name == "response.delta":
                    print(event["text"], end="", flush=True)
                elif name == "response.done":
                    print()
                elif name == "error" or name == "turn.cancelled":
                    print(f"\n{name}: {json.dumps(event)}", file=sys.stderr)
                    return 1
            return 0
    except omnid_client.OmnidError as e:
        print(f"error {e.code}: {e.message}", file=sys.stderr)
        return 1
    except (omnid_client.NotRunning, omnid_client.Timeout) as e:
        print(e, file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
