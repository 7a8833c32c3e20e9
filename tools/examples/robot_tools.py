#!/usr/bin/env python3
"""Example robot app for omnid's tool calls (docs/protocol.md "Tools") using pyzmq (`pip install pyzmq`).

It registers two robot functions, move_arm and set_gripper, prints every call the model makes of them,
answers it with tool_result, and shows the answer that follows (text and, when spoken, where it played).

    robot_tools.py                      serve calls until Ctrl-C (voice turns, other clients' asks)
    robot_tools.py --ask "Lift the cup" ask once, serve the calls of that turn, exit when it ends
    robot_tools.py --ask "..." --tool-choice move_arm     force a call of move_arm (or auto|none|required)

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

# OpenAI-style function tools; the parameters use the JSON-Schema subset omnid constrains decoding to.
TOOLS = [
    {"type": "function", "function": {
        "name": "move_arm",
        "description": "Move the gripper to a point in front of the robot (metres).",
        "parameters": {"type": "object", "properties": {
            "x": {"type": "number", "minimum": -1, "maximum": 1, "description": "left (-) / right (+)"},
            "y": {"type": "number", "minimum": -1, "maximum": 1, "description": "back (-) / front (+)"},
            "z": {"type": "number", "minimum": 0, "maximum": 1.5, "description": "height above the table"}},
            "required": ["x", "y", "z"]}}},
    {"type": "function", "function": {
        "name": "set_gripper",
        "description": "Open or close the gripper.",
        "parameters": {"type": "object", "properties": {
            "closed": {"type": "boolean"},
            "force": {"type": "integer", "minimum": 1, "maximum": 40, "description": "newtons"}},
            "required": ["closed", "force"]}}},
]


def move_arm(x, y, z):
    return {"ok": True, "position": [x, y, z]}


def set_gripper(closed, force):
    return {"ok": True, "closed": closed, "force": force}


HANDLERS = {"move_arm": move_arm, "set_gripper": set_gripper}


class Omnid:
    def __init__(self, ctx, timeout_ms=5000):
        self.ctx = ctx
        self.timeout_ms = timeout_ms
        self.next_id = 1
        # The tools belong to this connection: keep the socket for as long as the tools should stay.
        self.control = ctx.socket(zmq.DEALER)
        self.control.linger = 0
        self.control.connect(CONTROL)

    def request(self, cmd, **fields):
        request_id = self.next_id
        self.next_id += 1
        self.control.send(json.dumps({"id": request_id, "cmd": cmd, **fields}).encode())
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.control.poll(int(left * 1000)):
                raise TimeoutError(f"no reply from omnid at {CONTROL} within {self.timeout_ms} ms")
            reply = json.loads(self.control.recv_multipart()[-1])
            if reply.get("id") == request_id:
                return reply

    def subscribe(self, topics):
        sub = self.ctx.socket(zmq.SUB)
        sub.linger = 0
        for topic in topics:
            sub.setsockopt_string(zmq.SUBSCRIBE, topic)
        monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        sub.connect(EVENTS)
        if monitor.poll(self.timeout_ms):
            recv_monitor_message(monitor)
            time.sleep(0.02)  # let the publisher register the subscription
        sub.disable_monitor()
        monitor.close()
        return sub


def check(reply, what):
    if not reply.get("ok"):
        err = reply["error"]
        sys.exit(f"{what}: {err['code']}: {err['message']}")
    return reply


def answer_call(omnid, event):
    """Runs the robot function a tool.call names and sends its result back."""
    name, args = event["name"], event["arguments"]
    print(f"call {name} {json.dumps(args)}", flush=True)
    try:
        content, is_error = json.dumps(HANDLERS[name](**args)), False
    except Exception as e:  # the model reads the error and can tell the user
        content, is_error = str(e), True
    reply = omnid.request("tool_result", call_id=event["call_id"], content=content, is_error=is_error)
    if not reply["ok"]:  # e.g. not_found: the call timed out or its turn was cancelled meanwhile
        print(f"tool_result {event['call_id']}: {reply['error']['message']}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ask", help="ask this once, then exit when the turn ends")
    parser.add_argument("--tool-choice", default="auto", help="auto | none | required | a tool's name")
    parser.add_argument("--quiet", action="store_true", help="with --ask: do not speak the answer")
    args = parser.parse_args()

    ctx = zmq.Context()
    omnid = Omnid(ctx)
    events = omnid.subscribe(["tool.", "response.done", "speech.", "turn.cancelled", "error"])
    reply = check(omnid.request("register_tools", tools=TOOLS), "register_tools")
    print("registered: " + ", ".join(reply["tools"]), flush=True)

    turn_id = None
    if args.ask:
        fields = {"text": args.ask, "speak": not args.quiet}
        if args.tool_choice in ("auto", "none", "required"):
            fields["tool_choice"] = args.tool_choice
        else:
            fields["tool_choice"] = {"name": args.tool_choice}
        turn_id = check(omnid.request("ask", **fields), "ask")["turn_id"]

    speaking = set()
    try:
        while True:
            if not events.poll(1000):
                continue
            topic, body = events.recv_multipart()
            topic, event = topic.decode(), json.loads(body)
            tid = event.get("turn_id")
            if turn_id is not None and tid != turn_id:
                continue
            if topic == "tool.call" and event["name"] in HANDLERS:
                answer_call(omnid, event)
            elif topic == "tool.timeout":
                print(f"timed out: {event['name']} ({event['call_id']})", flush=True)
            elif topic == "tool.cancelled":
                print(f"cancelled: {event['name']} ({event['reason']})", flush=True)
            elif topic == "speech.start":
                speaking.add(tid)
            elif topic == "response.done":
                print(f"answer: {event['text']}", flush=True)
                if turn_id is not None and tid not in speaking:
                    break  # not spoken: the turn ends here
            elif topic == "speech.end":
                print(f"spoken: {event['duration_ms']} ms to {event['output']}", flush=True)
                if turn_id is not None:
                    break
            elif topic == "turn.cancelled":
                print(f"turn {tid} cancelled ({event['reason']})", flush=True)
                if turn_id is not None:
                    break
            elif topic == "error":
                print(f"omnid error: {event['message']}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        omnid.request("unregister_tools")
    return 0


if __name__ == "__main__":
    sys.exit(main())
