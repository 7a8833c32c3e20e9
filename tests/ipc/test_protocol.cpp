// Request validation of control protocol v1: every command, every error code parse_request produces, id echo of
// every JSON type, and random garbage.
#include <gtest/gtest.h>

#include <random>

#include "ipc/protocol.h"
#include "protocol_expect.h"

using namespace omni::ipc;
using namespace omni::ipc::test_util;
using nlohmann::json;

namespace {

const std::string kWav = std::string("RIFF\x24\x00\x00\x00WAVEfmt ", 16) + std::string(28, '\0');

ParseResult parse(const json& j, std::optional<std::string> binary = std::nullopt) {
  return parse_request(j.dump(), std::move(binary));
}

}  // namespace

TEST(Protocol, SimpleCommands) {
  EXPECT_EQ(command_name(parse({{"id", 1}, {"cmd", "ping"}}).request->command), "ping");
  EXPECT_EQ(command_name(parse({{"id", 1}, {"cmd", "status"}}).request->command), "status");
  EXPECT_EQ(command_name(parse({{"id", 1}, {"cmd", "reset"}}).request->command), "reset");
  EXPECT_EQ(command_name(parse({{"id", 1}, {"cmd", "reload"}}).request->command), "reload");
  expect_error(parse({{"id", 1}, {"cmd", "status"}, {"verbose", true}}), ErrorCode::bad_request,
               "unknown field 'verbose' for command 'status' (it takes no fields)");
  expect_error(parse({{"id", 1}, {"cmd", "ping"}}, kWav), ErrorCode::bad_request, "takes no binary frame");
}

TEST(Protocol, AskTakesMaxNewTokensSamplingAndSpeakerForItsTurnAndNamesABadOne) {
  auto a = command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}, {"max_new_tokens", 32768},
                                         {"sampling", {{"temperature", 0}, {"seed", nullptr}}}, {"speaker", "chelsie"}}));
  EXPECT_EQ(a.max_new_tokens, 32768);
  ASSERT_TRUE(a.sampling);
  EXPECT_EQ(a.sampling->temperature, std::optional<double>(0.0));
  ASSERT_TRUE(a.sampling->seed);
  EXPECT_FALSE(*a.sampling->seed);  // null: the checkpoint's
  EXPECT_FALSE(a.sampling->top_k);
  EXPECT_EQ(a.speaker, "chelsie");
  auto plain = command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}}));
  EXPECT_FALSE(plain.max_new_tokens || plain.sampling || plain.speaker);
  for (const json& bad : {json(0), json(32769), json(-1), json(1.5), json("8"), json(nullptr), json(1e300),
                          json(std::uint64_t(1) << 63)})
    expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}, {"max_new_tokens", bad}}), ErrorCode::bad_request,
                 "field 'max_new_tokens' must be an integer in 1..32768");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}, {"sampling", {{"top_k", -1}}}}),
               ErrorCode::bad_request, "field 'sampling.top_k'");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}, {"sampling", json::object()}}),
               ErrorCode::bad_request, "field 'sampling' needs at least one");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}, {"speaker", ""}}), ErrorCode::bad_request,
               "field 'speaker' must not be empty");
}

TEST(Protocol, Ask) {
  auto text = command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}}));
  EXPECT_EQ(text.text, "hi");
  EXPECT_TRUE(text.speak);
  EXPECT_FALSE(text.wav);
  auto quiet = command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}, {"speak", false}}));
  EXPECT_FALSE(quiet.speak);
  auto audio = command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}}, kWav));
  EXPECT_FALSE(audio.text);
  EXPECT_EQ(audio.wav, kWav);
  auto both = command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}, {"text", "what is this?"}}, kWav));
  EXPECT_TRUE(both.text && both.wav);

  expect_error(parse({{"id", 1}, {"cmd", "ask"}}), ErrorCode::bad_request, "needs field 'text', 'images', 'camera' or a WAV");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", ""}}), ErrorCode::bad_request, "'text' must not be empty");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", 5}}), ErrorCode::bad_request,
               "field 'text' must be a string, not an integer");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "x"}, {"speak", "yes"}}), ErrorCode::bad_request,
               "field 'speak' must be true or false, not a string");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"txt", "x"}}), ErrorCode::bad_request,
               "unknown field 'txt' for command 'ask' (allowed: text, speak, max_new_tokens, sampling, speaker, queue, preempt, tool_choice, response_format, images, camera)");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}}, "not a wav file"), ErrorCode::bad_request,
               "binary frame is not a WAV file (14 bytes");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}}, ""), ErrorCode::bad_request, "not a WAV file (0 bytes");
}

TEST(Protocol, Say) {
  EXPECT_EQ(command_of<SayRequest>(parse({{"id", 1}, {"cmd", "say"}, {"text", "hello"}})).text, "hello");
  expect_error(parse({{"id", 1}, {"cmd", "say"}}), ErrorCode::bad_request, "missing field 'text' (a string)");
  expect_error(parse({{"id", 1}, {"cmd", "say"}, {"text", nullptr}}), ErrorCode::bad_request, "not null");
  expect_error(parse({{"id", 1}, {"cmd", "say"}, {"text", "a"}}, kWav), ErrorCode::bad_request, "no binary frame");
}

TEST(Protocol, Cancel) {
  EXPECT_FALSE(command_of<CancelRequest>(parse({{"id", 1}, {"cmd", "cancel"}})).turn_id);
  EXPECT_EQ(command_of<CancelRequest>(parse({{"id", 1}, {"cmd", "cancel"}, {"turn_id", 42}})).turn_id, 42u);
  EXPECT_EQ(command_of<CancelRequest>(parse_request(R"({"id":1,"cmd":"cancel","turn_id":18446744073709551615})"))
                .turn_id,
            18446744073709551615ull);
  expect_error(parse({{"id", 1}, {"cmd", "cancel"}, {"turn_id", 0}}), ErrorCode::bad_request,
               "'turn_id' must be a positive integer, not 0");
  expect_error(parse({{"id", 1}, {"cmd", "cancel"}, {"turn_id", -3}}), ErrorCode::bad_request, "not -3");
  expect_error(parse({{"id", 1}, {"cmd", "cancel"}, {"turn_id", 1.5}}), ErrorCode::bad_request, "not 1.5");
  expect_error(parse({{"id", 1}, {"cmd", "cancel"}, {"turn_id", "7"}}), ErrorCode::bad_request, "not a string");
}

TEST(Protocol, Listen) {
  EXPECT_TRUE(command_of<ListenRequest>(parse({{"id", 1}, {"cmd", "listen"}, {"enabled", true}})).enabled);
  EXPECT_FALSE(command_of<ListenRequest>(parse({{"id", 1}, {"cmd", "listen"}, {"enabled", false}})).enabled);
  expect_error(parse({{"id", 1}, {"cmd", "listen"}}), ErrorCode::bad_request, "missing field 'enabled'");
  expect_error(parse({{"id", 1}, {"cmd", "listen"}, {"enabled", 1}}), ErrorCode::bad_request,
               "'enabled' must be true or false, not an integer");
}

TEST(Protocol, Set) {
  auto s = command_of<SetRequest>(parse({{"id", 1}, {"cmd", "set"}, {"speaker", "chelsie"}, {"volume", 0.5}}));
  EXPECT_EQ(s.speaker, "chelsie");
  EXPECT_EQ(s.volume, 0.5);
  EXPECT_FALSE(s.system_prompt);
  EXPECT_EQ(command_of<SetRequest>(parse({{"id", 1}, {"cmd", "set"}, {"system_prompt", ""}})).system_prompt, "");
  EXPECT_EQ(command_of<SetRequest>(parse({{"id", 1}, {"cmd", "set"}, {"volume", 0}})).volume, 0.0);
  EXPECT_EQ(command_of<SetRequest>(parse({{"id", 1}, {"cmd", "set"}, {"volume", 1}})).volume, 1.0);
  expect_error(parse({{"id", 1}, {"cmd", "set"}}), ErrorCode::bad_request,
               "needs at least one of 'speaker', 'volume', 'system_prompt', 'sampling'");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"volume", 1.01}}), ErrorCode::bad_request,
               "'volume' must be in [0, 1], got 1.01");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"volume", -0.1}}), ErrorCode::bad_request, "got -0.1");
  expect_error(parse_request(R"({"id":1,"cmd":"set","volume":1e999})"), ErrorCode::bad_request,
               "not valid JSON: number overflow parsing '1e999'");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"volume", "loud"}}), ErrorCode::bad_request,
               "'volume' must be a number in [0, 1], not a string");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"speaker", ""}}), ErrorCode::bad_request,
               "'speaker' must not be empty");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"speaker", "x"}, {"pitch", 2}}), ErrorCode::bad_request,
               "unknown field 'pitch' for command 'set' (allowed: speaker, volume, system_prompt, sampling)");
}

TEST(Protocol, SetSamplingTakesNumbersOrNullAndNamesTheBadKey) {
  const auto s = command_of<SetRequest>(
      parse({{"id", 1}, {"cmd", "set"}, {"sampling", {{"temperature", 0.7}, {"top_k", 20}, {"seed", nullptr}}}}));
  ASSERT_TRUE(s.sampling);
  EXPECT_EQ(s.sampling->temperature, std::optional<double>(0.7));
  EXPECT_EQ(s.sampling->top_k, std::optional<double>(20));
  ASSERT_TRUE(s.sampling->seed);           // present ...
  EXPECT_FALSE(*s.sampling->seed);         // ... and null: back to the checkpoint's value
  EXPECT_FALSE(s.sampling->top_p);         // absent: unchanged
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"sampling", {{"top_p", 0}}}}), ErrorCode::bad_request,
               "field 'sampling.top_p' must be in (0, 1] (1: off), got 0");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"sampling", {{"top_k", 2.5}}}}), ErrorCode::bad_request,
               "field 'sampling.top_k' must be an integer in [0, 1000000] (0: off), got 2.5");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"sampling", {{"temperature", 101}}}}), ErrorCode::bad_request,
               "'sampling.temperature' must be 0 (greedy) or in (0, 100], got 101");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"sampling", {{"seed", -1}}}}), ErrorCode::bad_request,
               "'sampling.seed' must be an integer in [0, 2^53], got -1");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"sampling", {{"top_k", "many"}}}}), ErrorCode::bad_request,
               "'sampling.top_k' must be a number or null, not a string");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"sampling", {{"warmth", 1}}}}), ErrorCode::bad_request,
               "unknown field 'sampling.warmth'");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"sampling", json::object()}}), ErrorCode::bad_request,
               "field 'sampling' needs at least one of");
  expect_error(parse({{"id", 1}, {"cmd", "set"}, {"sampling", 1}}), ErrorCode::bad_request,
               "field 'sampling' must be an object");
}

TEST(Protocol, EnvelopeErrors) {
  expect_error(parse_request(""), ErrorCode::bad_request, "request frame is empty");
  expect_error(parse_request("{\"id\":1,"), ErrorCode::bad_request, "not valid UTF-8 JSON (error at byte");
  expect_error(parse_request("[1,2]"), ErrorCode::bad_request, "must be a JSON object, not an array");
  expect_error(parse_request("\"ping\""), ErrorCode::bad_request, "not a string");
  expect_error(parse_request(R"({"cmd":"ping"})"), ErrorCode::bad_request, "missing field 'id'");
  expect_error(parse_request(R"({"id":1})"), ErrorCode::bad_request, "missing field 'cmd'");
  expect_error(parse_request(R"({"id":1,"cmd":7})"), ErrorCode::bad_request, "'cmd' must be a string, not an integer");
  expect_error(parse_request(R"({"id":1,"cmd":"fly"})"), ErrorCode::unknown_command,
               "unknown command 'fly' (known: ping, status, ask, say, cancel, listen, reset, set, reload, events, register_tools, unregister_tools, tool_result, push_audio)");
  expect_error(parse_request("{\"id\":1,\"cmd\":\"say\",\"text\":\"\xff\xfe\"}"), ErrorCode::bad_request,
               "not valid UTF-8 JSON");
  std::string deep = "{\"id\":1,\"cmd\":\"ping\",\"x\":" + std::string(100, '[') + std::string(100, ']') + "}";
  expect_error(parse_request(deep), ErrorCode::bad_request, "nested deeper than 64 levels");
  // Brackets inside strings do not count as nesting.
  std::string brackets = json{{"id", 1}, {"cmd", "say"}, {"text", std::string(200, '[')}}.dump();
  EXPECT_TRUE(parse_request(brackets).ok());
  // A long unknown command name is clipped in the message.
  auto r = parse({{"id", 1}, {"cmd", std::string(1000, 'z')}});
  expect_error(r, ErrorCode::unknown_command, "zzz...'");
  EXPECT_EQ(r.error->message.find(std::string(65, 'z')), std::string::npos);  // 64 characters of the name at most
  EXPECT_LT(r.error->message.size(), 300u);  // the clipped name and the list of the 13 commands
}

TEST(Protocol, IdOfEveryJsonTypeIsEchoed) {
  for (const json& id : {json(nullptr), json(true), json(17), json(-5), json(2.5), json("abc"), json::array({1, "x"}),
                         json{{"k", {1, 2}}}, json(18446744073709551615ull)}) {
    ParseResult ok = parse({{"id", id}, {"cmd", "status"}});
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(ok.request->id, id);
    EXPECT_EQ(json::parse(serialize(ok_reply(ok.id))).at("id"), id);
    ParseResult bad = parse({{"id", id}, {"cmd", "nope"}});
    ASSERT_FALSE(bad.ok());
    json reply = json::parse(serialize(error_reply(bad.id, bad.error->code, bad.error->message)));
    EXPECT_EQ(reply.at("id"), id);
    EXPECT_EQ(reply.at("ok"), false);
    EXPECT_EQ(reply.at("error").at("code"), "unknown_command");
  }
  // Unreadable id: null.
  EXPECT_TRUE(parse_request("garbage").id.is_null());
  EXPECT_TRUE(parse_request(R"({"cmd":"ping"})").id.is_null());
  // Readable id, later failure: echoed.
  EXPECT_EQ(parse_request(R"({"id":"x","cmd":"say"})").id, "x");
}

TEST(Protocol, ReplyAndEventBuilders) {
  json ok = ok_reply(7, {{"turn_id", 3}, {"id", "ignored"}, {"ok", false}});
  EXPECT_EQ(ok, (json{{"id", 7}, {"ok", true}, {"turn_id", 3}}));
  json err = error_reply("a", ErrorCode::busy, "a turn is running");
  EXPECT_EQ(err, (json{{"id", "a"}, {"ok", false}, {"error", {{"code", "busy"}, {"message", "a turn is running"}}}}));
  for (auto c : {ErrorCode::bad_request, ErrorCode::unknown_command, ErrorCode::busy, ErrorCode::too_large,
                 ErrorCode::not_found, ErrorCode::unavailable, ErrorCode::internal})
    EXPECT_EQ(error_code_from_string(to_string(c)), c);
  EXPECT_FALSE(error_code_from_string("nope"));

  EventFrames e = build_event(event::kResponseDelta, {{"turn_id", 4}, {"text", "Hel"}}, 12, 1700000000123);
  EXPECT_EQ(e.topic, "response.delta");
  EXPECT_EQ(json::parse(e.body), (json{{"turn_id", 4}, {"text", "Hel"}, {"seq", 12}, {"ts_ms", 1700000000123}}));
  EXPECT_TRUE(is_known_event("speech.first_audio"));
  EXPECT_FALSE(is_known_event("speech.last_audio"));
  // Invalid UTF-8 from a producer is replaced, never thrown.
  EXPECT_NO_THROW(serialize(json{{"text", std::string("\xff\xfe")}}));
}

TEST(Protocol, RandomGarbageNeverThrows) {
  std::mt19937 rng(1234);
  const std::string alphabet = std::string("{}[]\":,0123456789.eE+-truefalsnl \\/u\x80\xff") + '\0' + "idcmdtextspeak";
  const std::vector<std::string> seeds = {R"({"id":1,"cmd":"ask","text":"hi","speak":true})",
                                          R"({"id":[1,{"a":null}],"cmd":"set","volume":0.5,"speaker":"x"})",
                                          R"({"id":"q","cmd":"cancel","turn_id":9})"};
  int ok = 0, errors = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string input;
    if (i % 2 == 0) {  // mutate a valid request
      input = seeds[i % seeds.size()];
      int edits = 1 + rng() % 4;
      for (int k = 0; k < edits && !input.empty(); ++k) {
        std::size_t pos = rng() % input.size();
        switch (rng() % 3) {
          case 0: input[pos] = alphabet[rng() % alphabet.size()]; break;
          case 1: input.erase(pos, 1 + rng() % 3); break;
          default: input.insert(pos, 1, alphabet[rng() % alphabet.size()]);
        }
      }
    } else {  // pure noise
      input.resize(rng() % 64);
      for (auto& c : input) c = static_cast<char>(rng());
    }
    std::optional<std::string> binary;
    if (rng() % 4 == 0) binary = std::string(rng() % 20, 'R');
    ParseResult r;
    ASSERT_NO_THROW(r = parse_request(input, binary)) << input;
    ASSERT_NE(r.request.has_value(), r.error.has_value());
    ASSERT_NO_THROW(serialize(r.ok() ? ok_reply(r.id) : error_reply(r.id, r.error->code, r.error->message)));
    r.ok() ? ++ok : ++errors;
    if (r.error) {
      ASSERT_NE(r.error->code, ErrorCode::internal) << input << " -> " << r.error->message;
    }
  }
  // The mutations must exercise both outcomes, or this test proves nothing.
  EXPECT_GT(ok, 100);
  EXPECT_GT(errors, 10000);
}

TEST(Protocol, PushAudioTakesARateInRangeAFormatAndWholeSamplesUpToTheLimit) {
  const std::string req = R"({"id":1,"cmd":"push_audio","sample_rate":8000,"format":"s16le"})";
  const auto ok = parse_request(req, std::string(kMaxPushAudioBytes, '\0'));
  ASSERT_TRUE(ok.ok()) << ok.error->message;
  const auto& p = std::get<PushAudioRequest>(ok.request->command);
  EXPECT_EQ(p.sample_rate, 8000);
  EXPECT_FALSE(p.f32);
  EXPECT_EQ(p.pcm.size(), kMaxPushAudioBytes);
  const auto f = parse_request(R"({"id":1,"cmd":"push_audio","sample_rate":48000,"format":"f32le"})", std::string(8, '\0'));
  ASSERT_TRUE(f.ok()) << f.error->message;
  EXPECT_TRUE(std::get<PushAudioRequest>(f.request->command).f32);
  expect_error(parse_request(req, std::string(kMaxPushAudioBytes + 2, '\0')), ErrorCode::bad_request,
               "binary frame of 'push_audio' must be 1..1048576 bytes of whole s16le samples (2 bytes each), not 1048578 bytes");
  expect_error(parse_request(req), ErrorCode::bad_request, "command 'push_audio' needs a binary frame with the PCM");
  expect_error(parse_request(R"({"id":1,"cmd":"push_audio","sample_rate":48001,"format":"s16le"})", std::string(2, '\0')),
               ErrorCode::bad_request, "field 'sample_rate' must be an integer in 8000..48000, not 48001");
  expect_error(parse_request(R"({"id":1,"cmd":"push_audio","sample_rate":16000.5,"format":"s16le"})", std::string(2, '\0')),
               ErrorCode::bad_request, "field 'sample_rate' must be an integer");
  expect_error(parse_request(R"({"id":1,"cmd":"push_audio","sample_rate":16000})", std::string(2, '\0')),
               ErrorCode::bad_request, "'format'");
  expect_error(parse_request(R"({"id":1,"cmd":"say","text":"hi"})", std::string(2, '\0')), ErrorCode::bad_request,
               "takes no binary frame (only 'ask' accepts WAV bytes, and 'push_audio' PCM)");
}

TEST(Protocol, AskForTheCameraFrameIsABooleanAndMayBeTheWholeQuestion) {
  auto cam = command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}, {"camera", true}}));
  EXPECT_TRUE(cam.camera);
  EXPECT_FALSE(cam.text);
  EXPECT_FALSE(command_of<AskRequest>(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}})).camera);
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"text", "hi"}, {"camera", "yes"}}), ErrorCode::bad_request,
               "camera");
  expect_error(parse({{"id", 1}, {"cmd", "ask"}, {"camera", false}}), ErrorCode::bad_request,
               "needs field 'text', 'images', 'camera' or a WAV");
}
