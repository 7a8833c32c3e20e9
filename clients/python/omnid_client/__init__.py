"""Client for omnid's control protocol 2 (docs/protocol.md). Needs pyzmq.

    from omnid_client import Client
    with Client() as omnid:                       # $OMNID_CONTROL / $OMNID_EVENTS, else /run/omnid/...
        events = omnid.events()                   # from the daemon's current seq on; nothing is missed
        turn = omnid.request("ask", text="Hello", speak=False)["turn_id"]
        for name, event in events.turn(turn):     # this turn's events until it ends
            if name == "response.delta":
                print(event["text"], end="")

The microphone from the app (daemon config `audio.input.source: ipc`):
    omnid.request("push_audio", binary=pcm, sample_rate=16000, format="s16le")   # chunks as they are recorded

Speech as PCM (daemon config `audio.output.publish: true`): `speech.audio` events come as (name, body) with the
PCM bytes in body["pcm"] (body: turn_id, sample_rate, format s16le|f32le, offset, samples). They are outside the
numbered stream (no seq, not in the `events since` buffer): delivered as they arrive, only when `topics` asks for
them (e.g. omnid.events(["speech."])), and a chunk lost to a full queue is seen as a jump in `offset`.

Nothing else is missed: the event stream reads the PUB socket and fills every gap (a subscriber still connecting,
a queue that overflowed) from the daemon's `events {"since": N}` buffer, in seq order, each event once.
A request is never queued for a daemon that is not there: the control socket sends only on an established
connection (ZMQ_IMMEDIATE) and raises NotRunning when none comes within the timeout.
"""
import json
import os
import time

import zmq

__all__ = ["Client", "EventStream", "OmnidError", "NotRunning", "Timeout", "DEFAULT_CONTROL", "DEFAULT_EVENTS"]

DEFAULT_CONTROL = "ipc:///run/omnid/control.sock"
DEFAULT_EVENTS = "ipc:///run/omnid/events.sock"
PROTOCOL = 2


class OmnidError(Exception):
    """An error reply: .code ("busy", "bad_request", ...) and .message, as the daemon sent them."""

    def __init__(self, code, message, reply=None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reply = reply


class NotRunning(Exception):
    """No connection to omnid (not running, or the socket is not reachable); the request was not sent."""


class Timeout(Exception):
    """The request was sent but no reply came in time."""


class Client:
    def __init__(self, control=None, events=None, timeout_ms=5000, context=None):
        self.control_endpoint = control or os.environ.get("OMNID_CONTROL") or DEFAULT_CONTROL
        self.events_endpoint = events or os.environ.get("OMNID_EVENTS") or DEFAULT_EVENTS
        self.timeout_ms = timeout_ms
        self._own_context = context is None
        self.ctx = context or zmq.Context()
        self._next_id = 1
        self._socket = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._own_context:
            self.ctx.destroy(linger=0)

    def _control(self):
        if self._socket is None:
            path = self.control_endpoint[len("ipc://"):] if self.control_endpoint.startswith("ipc://") else None
            if path and not os.path.exists(path):
                raise NotRunning(f"omnid is not running (no socket at {path})")
            s = self.ctx.socket(zmq.DEALER)
            s.linger = 0
            s.setsockopt(zmq.IMMEDIATE, 1)
            s.connect(self.control_endpoint)
            self._socket = s
        return self._socket

    def request(self, cmd, binary=None, timeout_ms=None, check=True, **fields):
        """Sends one request and returns the reply dict. With check, an error reply raises OmnidError."""
        timeout_ms = self.timeout_ms if timeout_ms is None else timeout_ms
        s = self._control()
        request_id = self._next_id
        self._next_id += 1
        frames = [json.dumps({"id": request_id, "cmd": cmd, "protocol": PROTOCOL, **fields}).encode()]
        if binary is not None:
            frames.append(binary)
        deadline = time.monotonic() + timeout_ms / 1000
        if not s.poll(timeout_ms, zmq.POLLOUT):
            raise NotRunning(f"no connection to omnid at {self.control_endpoint} within {timeout_ms} ms; not sent")
        s.send_multipart(frames, zmq.DONTWAIT)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not s.poll(int(left * 1000) + 1):
                raise Timeout(f"no reply from omnid at {self.control_endpoint} within {timeout_ms} ms")
            reply = json.loads(s.recv_multipart()[-1])
            if reply.get("id") == request_id:  # skip late replies to earlier requests
                if check and not reply.get("ok"):
                    err = reply.get("error", {})
                    raise OmnidError(err.get("code"), err.get("message"), reply)
                return reply

    def events(self, topics=None, since=None):
        """An EventStream of the events after seq `since` (default: the daemon's seq now)."""
        if since is None:
            since = self.request("ping")["seq"]
        return EventStream(self, topics, since)


class EventStream:
    """Events in seq order, each once, none missed (see the module's doc). Iterate, or call next(timeout_ms)."""

    def __init__(self, client, topics, since):
        self.client = client
        self.topics = list(topics or [])
        self.last_seq = since
        self._pending = []
        self._sub = client.ctx.socket(zmq.SUB)
        self._sub.linger = 0
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")  # all: seq gaps then mean missed events, not filtered ones
        self._sub.connect(client.events_endpoint)

    def close(self):
        self._sub.close(linger=0)

    def _wanted(self, name):
        return not self.topics or any(name.startswith(t) for t in self.topics)

    def _catch_up(self):
        reply = self.client.request("events", since=self.last_seq)
        for e in reply["events"]:
            if e["seq"] > self.last_seq:
                self._pending.append((e.pop("event"), e))
        if not reply.get("complete", True):
            self._pending.insert(0, ("omnid.missed", {"since": self.last_seq, "oldest_seq": reply["oldest_seq"]}))

    def next(self, timeout_ms=None):
        """The next wanted event as (name, body), or None when none came within timeout_ms."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            while self._pending:
                name, body = self._pending.pop(0)
                if name != "omnid.missed" and "seq" in body:
                    if body["seq"] <= self.last_seq:
                        continue
                    self.last_seq = body["seq"]
                if self._wanted(name):
                    return name, body
            wait = 100 if deadline is None else max(0, min(100, int((deadline - time.monotonic()) * 1000)))
            if self._sub.poll(wait):
                frames = self._sub.recv_multipart()
                topic, raw = frames[0], frames[1]
                body = json.loads(raw)
                if "seq" not in body:  # a stream event with a binary frame (speech.audio): never replayed
                    name = topic.decode()
                    if len(frames) == 3 and self.topics and self._wanted(name):
                        body["pcm"] = frames[2]
                        self._pending.append((name, body))
                    continue
                if body["seq"] <= self.last_seq:
                    continue
                if body["seq"] > self.last_seq + 1:
                    self._catch_up()  # a gap: what came before this one
                self._pending.append((topic.decode(), body))
                continue
            # Quiet for a while: ask the buffer (a subscriber still connecting receives nothing).
            self._catch_up()
            if not self._pending and deadline is not None and time.monotonic() >= deadline:
                return None

    def __iter__(self):
        while True:
            yield self.next()

    def turn(self, turn_id, speak=False, timeout_ms=60000):
        """The events of one turn until it ends: turn.cancelled, speech.end when it was spoken (speak=True), else
        its response.done. Raises Timeout when the turn goes quiet for timeout_ms."""
        while True:
            event = self.next(timeout_ms)
            if event is None:
                raise Timeout(f"no event for turn {turn_id} within {timeout_ms} ms")
            name, body = event
            if body.get("turn_id") != turn_id:
                continue
            yield name, body
            if name in ("turn.cancelled", "speech.end"):
                return
            if name == "response.done" and not speak and body.get("stop") != "cancelled":
                return
