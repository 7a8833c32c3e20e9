#!/usr/bin/env python3
"""Reference fixtures for conversations with tools (tests/unit/test_chat_tools.cpp).

Renders conversations with transformers' `apply_chat_template` (its Jinja environment and its `tojson`, which is
json.dumps(ensure_ascii=False)) using TEMPLATE below, encodes the result with the real Qwen3-Omni tokenizer, and
writes tests/fixtures/tools/chat_cases.json:
  cases: [{name, messages, tools, audio_tokens, rendered, ids}]
    messages/tools as given to apply_chat_template (key order kept); audio_tokens: the <|audio_pad|> count each
    audio item stands for (the processor expands the template's single pad to that many, as done here).

TEMPLATE is the Qwen3 Instruct tool template (tools in the system turn, <tool_call> blocks in assistant turns,
consecutive tool results in one user turn) with content lists rendered the Omni way (audio, image and video items
become their placeholder tokens, text items their text). The tokenizer files of the release carry no chat template;
docs/model.md §11 says what this means.

Seeded and re-runnable: python3 tools/gen_tool_fixtures.py [--tokenizer-dir DIR] [--out DIR] (transformers 5.17)
"""
import argparse
import json
import os
import random
import sys

from transformers import PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixturelib.tokenizer_file import committed_tokenizer_dir  # noqa: E402

SEED = 20261205

TEMPLATE = r"""{%- macro render_content(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is none -%}
    {%- else -%}
        {%- for item in content -%}
            {%- if item.type == 'audio' -%}
                {{- '<|audio_start|><|audio_pad|><|audio_end|>' -}}
            {%- elif item.type == 'image' -%}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' -}}
            {%- elif item.type == 'video' -%}
                {{- '<|vision_start|><|video_pad|><|vision_end|>' -}}
            {%- elif item.type == 'text' -%}
                {{- item.text -}}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- render_content(messages[0].content) + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + render_content(messages[0].content) + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- set content = render_content(message.content) %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


def fn(name, description, parameters):
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


MOVE_ARM = fn("move_arm", "Move the arm's tool point to a position in metres, in the robot's base frame.", {
    "type": "object",
    "properties": {
        "x": {"type": "number", "minimum": -1.0, "maximum": 1.0},
        "y": {"type": "number", "minimum": -1.0, "maximum": 1.0},
        "z": {"type": "number", "minimum": 0.0, "maximum": 1.5},
        "speed": {"type": "string", "enum": ["slow", "normal", "fast"]},
    },
    "required": ["x", "y", "z"],
})
SET_GRIPPER = fn("set_gripper", "Open or close the gripper.", {
    "type": "object",
    "properties": {"closed": {"type": "boolean"}, "force_n": {"type": "integer", "minimum": 0, "maximum": 40}},
    "required": ["closed"],
})
WEATHER = fn("get_weather", "Wetter für eine Stadt abfragen — 天气查询 «quotes» \"and\" back\\slash", {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 64}}, "required": ["city"],
})
NAVIGATE = fn("navigate", "Drive to a named place or a pose.", {
    "type": "object",
    "properties": {
        "target": {
            "type": "object",
            "properties": {
                "place": {"type": ["string", "null"]},
                "pose": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"},
                                                          "theta": {"type": "number"}},
                         "required": ["x", "y"]},
            },
            "required": ["place"],
        },
        "waypoints": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                                                 "maxItems": 2}, "maxItems": 8},
        "avoid": {"type": "array", "items": {"type": "string", "enum": ["stairs", "people", "wet floor"]}},
    },
    "required": ["target"],
    "additionalProperties": False,
})

AUDIO_USER = {"role": "user", "content": [{"type": "audio", "audio": "clip.wav"}, {"type": "text", "text": ""}]}


def fixed_cases():
    c = []
    c.append(("one tool, no system message", [{"role": "user", "content": "What's the weather in Paris?"}],
              [WEATHER], []))
    c.append(("one tool with a system message",
              [{"role": "system", "content": "You are a robot's voice. Answer briefly."},
               {"role": "user", "content": "Close your hand."}], [SET_GRIPPER], []))
    c.append(("several tools, nested parameters, non-ASCII description",
              [{"role": "system", "content": "Du bist ein Roboter."},
               {"role": "user", "content": "Fahr in die Küche und heb die rote Tasse auf."}],
              [MOVE_ARM, SET_GRIPPER, WEATHER, NAVIGATE], []))
    c.append(("a call with arguments as an object, then its result",
              [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
               {"role": "tool", "content": "{\"temp_c\": 18, \"sky\": \"clear\"}"}], [WEATHER], []))
    c.append(("a call with arguments as a JSON string, then its result",
              [{"role": "user", "content": "Weather in Zürich?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"type": "function", "function": {"name": "get_weather",
                                                     "arguments": "{\"city\":\"Zürich\" }"}}]},
               {"role": "tool", "content": "12 °C, Regen"}], [WEATHER], []))
    c.append(("two calls with two results followed by text",
              [{"role": "system", "content": "You control a robot arm."},
               {"role": "user", "content": "Pick up the cup at x 0.3, y -0.1, z 0.05 and hold it firmly."},
               {"role": "assistant", "content": "Moving now.", "tool_calls": [
                   {"type": "function", "function": {"name": "move_arm", "arguments": {
                       "x": 0.3, "y": -0.1, "z": 0.05, "speed": "slow"}}},
                   {"type": "function", "function": {"name": "set_gripper", "arguments": {
                       "closed": True, "force_n": 25}}}]},
               {"role": "tool", "content": "{\"ok\": true, \"reached\": [0.3, -0.1, 0.05]}"},
               {"role": "tool", "content": "{\"ok\": true}"},
               {"role": "assistant", "content": "I am holding the cup."},
               {"role": "user", "content": "Thanks!"}], [MOVE_ARM, SET_GRIPPER], []))
    c.append(("a spoken user turn with tools", [{"role": "system", "content": "Robot."}, AUDIO_USER],
              [MOVE_ARM, SET_GRIPPER], [17]))
    c.append(("a spoken user turn with text after the clip and a call without content key",
              [{"role": "user", "content": [{"type": "audio", "audio": "a.wav"},
                                            {"type": "text", "text": "Do what I said."}]},
               {"role": "assistant", "tool_calls": [
                   {"function": {"name": "navigate", "arguments": {
                       "target": {"place": "kitchen", "pose": {"x": 1.5e-07, "y": -2e+20, "theta": -0.0}},
                       "waypoints": [[0, 1.25], [3.0, 1000000000000000000]], "avoid": []}}}]},
               {"role": "tool", "content": "arrived"}], [NAVIGATE], [9]))
    c.append(("arguments with escapes, control characters and non-ASCII",
              [{"role": "user", "content": "Say it."},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"type": "function", "function": {"name": "get_weather", "arguments": {
                       "city": "Line\nbreak \"quoted\" back\\slash tab\t bell\u0007 del\u007f 東京 😀 \u2028"}}}]},
               {"role": "tool", "content": ""}], [WEATHER], []))
    c.append(("no tools: a plain conversation with a call in history",
              [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": "ok", "tool_calls": [
                   {"type": "function", "function": {"name": "x", "arguments": {}}}]},
               {"role": "tool", "content": "done"}], [], []))
    return c


def rand_text(rng, n_max):
    pools = ["abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJ", "0123456789", "     ", ".,;:!?-_()[]{}'\"\\/",
             "\n\t", "äöüßéèñçø", "中文字符机器人", "😀👍🏽", "<>&=+*"]
    s = []
    for _ in range(rng.randint(0, n_max)):
        pool = rng.choice(pools)
        s.append(rng.choice(pool))
    return "".join(s)


def rand_value(rng, depth):
    k = rng.randint(0, 7 if depth < 3 else 4)
    if k == 0:
        return rng.randint(-10**rng.randint(0, 12), 10**rng.randint(0, 12))
    if k == 1:
        return rng.choice([0.0, -0.0, 0.5, 1e-5, 1e16, 1.5e300, 123.456, -7.25e-10, 1 / 3, 2.0 ** 60])
    if k == 2:
        return rng.choice([True, False, None])
    if k in (3, 4):
        return rand_text(rng, 12)
    if k == 5:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rand_text(rng, 6) or "k": rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def rand_schema(rng, depth):
    t = rng.choice(["string", "number", "integer", "boolean", "null", "array", "object"] if depth < 2
                   else ["string", "number", "integer", "boolean"])
    s = {"type": t}
    if rng.random() < 0.5:
        s["description"] = rand_text(rng, 20)
    if t == "string" and rng.random() < 0.4:
        s["enum"] = [rand_text(rng, 6) for _ in range(rng.randint(1, 4))]
    if t == "string" and rng.random() < 0.3:
        s["maxLength"] = rng.randint(1, 40)
    if t in ("number", "integer") and rng.random() < 0.5:
        s["minimum"] = rng.randint(-100, 0)
        s["maximum"] = rng.randint(1, 1000)
    if t == "array":
        s["items"] = rand_schema(rng, depth + 1)
        if rng.random() < 0.5:
            s["maxItems"] = rng.randint(1, 5)
    if t == "object":
        props = {}
        for i in range(rng.randint(0, 4)):
            props[rand_text(rng, 8) or ("p%d" % i)] = rand_schema(rng, depth + 1)
        s["properties"] = props
        s["required"] = [k for k in props if rng.random() < 0.5]
    return s


def random_cases(rng, n):
    out = []
    for i in range(n):
        tools = []
        for j in range(rng.randint(0, 3)):
            params = rand_schema(rng, 0)
            if params["type"] != "object":
                params = {"type": "object", "properties": {"arg": params}, "required": ["arg"]}
            tools.append(fn("tool_%d_%d" % (i, j), rand_text(rng, 30), params))
        msgs = []
        if rng.random() < 0.5:
            msgs.append({"role": "system", "content": rand_text(rng, 30)})
        audio = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.3:
                audio.append(rng.randint(0, 20))
                msgs.append({"role": "user", "content": [{"type": "audio", "audio": "x.wav"},
                                                         {"type": "text", "text": rand_text(rng, 10)}]})
            else:
                msgs.append({"role": "user", "content": rand_text(rng, 30)})
            calls = []
            for _ in range(rng.randint(0, 2)):
                args = {rand_text(rng, 5) or "a": rand_value(rng, 0) for _ in range(rng.randint(0, 3))}
                if rng.random() < 0.3:
                    args = json.dumps(args, ensure_ascii=rng.random() < 0.5,
                                      separators=rng.choice([(",", ":"), (", ", ": ")]))
                calls.append({"type": "function", "function": {"name": "f%d" % rng.randint(0, 9),
                                                               "arguments": args}})
            m = {"role": "assistant", "content": rand_text(rng, 20) if rng.random() < 0.6 else ""}
            if calls:
                m["tool_calls"] = calls
            msgs.append(m)
            for _ in calls:
                msgs.append({"role": "tool", "content": rand_text(rng, 20)})
        if msgs[-1]["role"] == "assistant" and rng.random() < 0.5:
            msgs.pop()
        out.append(("random %d" % i, msgs, tools, audio))
    return out


def expand_audio(rendered, counts):
    parts = rendered.split("<|audio_pad|>")
    assert len(parts) == len(counts) + 1, "audio items and counts differ"
    out = parts[0]
    for n, p in zip(counts, parts[1:]):
        out += "<|audio_pad|>" * n + p
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer-dir", default=os.environ.get("OMNI_TOKENIZER_DIR"),
                    help="folder with the real tokenizer.json (default: the committed tests/fixtures/tokenizer, "
                         "unpacked)")
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "tools"))
    args = ap.parse_args()
    if not args.tokenizer_dir:
        args.tokenizer_dir = committed_tokenizer_dir()
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(args.tokenizer_dir, "tokenizer.json"))
    rng = random.Random(SEED)
    cases = []
    for name, messages, tools, audio in fixed_cases() + random_cases(rng, 40):
        rendered = tok.apply_chat_template(messages, tools=tools or None, chat_template=TEMPLATE, tokenize=False,
                                           add_generation_prompt=True)
        rendered = expand_audio(rendered, audio)
        ids = tok.encode(rendered, add_special_tokens=False)
        cases.append({"name": name, "messages": messages, "tools": tools, "audio_tokens": audio,
                      "rendered": rendered, "ids": ids})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "chat_cases.json"), "w", encoding="utf-8") as f:
        json.dump({"source": "transformers apply_chat_template + tokenizers on the qwen3-omni tokenizer.json",
                   "template": TEMPLATE, "cases": cases}, f, ensure_ascii=False, indent=1)
    print("wrote %d cases to %s" % (len(cases), args.out))


if __name__ == "__main__":
    main()
