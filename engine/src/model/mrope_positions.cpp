#include "model/mrope_positions.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "omni/errors.h"

namespace omni {
namespace {

// A run of positions appended in order; `max` is the chunk's largest value over the 3 rows.
struct Chunks {
  MropePositions& out;
  float last_max = -1.f;  // max of the last appended chunk (-1: none yet)
  bool any = false;
  float next_start() const { return any ? last_max + 1.f : 0.f; }
  void text(int64_t n, float start) {
    for (int64_t i = 0; i < n; ++i) push(start + float(i), start + float(i), start + float(i));
    if (n > 0) end_chunk(start + float(n - 1));
  }
  void push(float t, float h, float w) {
    out.t.push_back(t);
    out.h.push_back(h);
    out.w.push_back(w);
  }
  void end_chunk(float max) {
    last_max = max;
    any = true;
  }
};

struct Vision {
  std::vector<float> t, h, w;
  float max = 0.f;
};

Vision vision_positions(const VisualSpan& s, int merge, double seconds_per_pair, double per_second, float start) {
  Vision v;
  const int gh = s.h / merge, gw = s.w / merge;
  for (int k = 0; k < s.t; ++k) {
    const float tk = float(k) * float(seconds_per_pair) * float(per_second);
    for (int i = 0; i < gh; ++i)
      for (int j = 0; j < gw; ++j) {
        v.t.push_back(tk + start);
        v.h.push_back(float(i) + start);
        v.w.push_back(float(j) + start);
      }
  }
  for (size_t i = 0; i < v.t.size(); ++i) v.max = std::max({v.max, v.t[i], v.h[i], v.w[i]});
  return v;
}

int64_t span_tokens(const VisualSpan& s, int merge) { return int64_t(s.t) * s.h * s.w / (int64_t(merge) * merge); }

}  // namespace

MropePositions mrope_positions(const std::vector<int32_t>& ids, const TokenIds& tok, const MropeInput& in) {
  const int32_t vision_start_id = tok.vision_start;
  MropePositions out;
  out.t.reserve(ids.size());
  out.h.reserve(ids.size());
  out.w.reserve(ids.size());
  Chunks c{out};
  const int m = in.spatial_merge_size;
  for (const auto* list : {&in.images, &in.videos})
    for (const VisualSpan& s : *list)
      if (s.t <= 0 || s.h <= 0 || s.w <= 0 || s.h % m || s.w % m)
        throw Error("positions: a visual grid (" + std::to_string(s.t) + ", " + std::to_string(s.h) + ", " +
                    std::to_string(s.w) + ") is not a positive grid in multiples of " + std::to_string(m));
  const int64_t n = int64_t(ids.size());
  size_t image = 0, video = 0, audio = 0;
  int64_t st = 0;
  auto expect_run = [&](int64_t at, int64_t count, int32_t id, const char* what) {
    if (at + count > n) throw Error(std::string("positions: the prompt ends inside ") + what);
    for (int64_t i = 0; i < count; ++i)
      if (ids[size_t(at + i)] != id)
        throw Error(std::string("positions: ") + what + " holds " + std::to_string(count) +
                    " placeholders in its grid but the prompt differs at token " + std::to_string(at + i));
  };
  auto expect_id = [&](int64_t at, int32_t id, const char* what) {
    if (at >= n || ids[size_t(at)] != id)
      throw Error(std::string("positions: expected ") + what + " at token " + std::to_string(at));
  };
  while (st < n) {
    // The next span: <|vision_start|> or <|audio_start|> at or after st.
    int64_t next = st;
    while (next < n && ids[size_t(next)] != vision_start_id && ids[size_t(next)] != tok.audio_start) ++next;
    c.text(next - st, c.next_start());
    if (next == n) break;
    const bool vision = ids[size_t(next)] == vision_start_id;
    const bool av = vision && next + 1 < n && ids[size_t(next + 1)] == tok.audio_start;
    const int64_t bos = av ? 2 : 1;
    {
      const float s0 = c.next_start();
      c.text(bos, s0);
    }
    const float start = c.next_start();
    int64_t body = 0;
    if (!vision) {
      if (audio >= in.audio_tokens.size()) throw Error("positions: more audio spans in the prompt than clips given");
      body = in.audio_tokens[audio++];
      expect_run(next + 1, body, tok.audio_pad, "an audio span");
      c.text(body, start);
      expect_id(next + 1 + body, tok.audio_end, "<|audio_end|>");
    } else if (!av && next + 1 < n && ids[size_t(next + 1)] == tok.image_pad) {
      if (image >= in.images.size()) throw Error("positions: more images in the prompt than grids given");
      const VisualSpan& s = in.images[image++];
      body = span_tokens(s, m);
      expect_run(next + 1, body, tok.image_pad, "an image span");
      const Vision v = vision_positions(s, m, 1.0, in.position_id_per_seconds, start);
      for (size_t i = 0; i < v.t.size(); ++i) c.push(v.t[i], v.h[i], v.w[i]);
      c.end_chunk(v.max);
    } else if (!av && next + 1 < n && ids[size_t(next + 1)] == tok.video_pad) {
      if (video >= in.videos.size()) throw Error("positions: more videos in the prompt than grids given");
      const VisualSpan& s = in.videos[video++];
      body = span_tokens(s, m);
      expect_run(next + 1, body, tok.video_pad, "a video span");
      const Vision v = vision_positions(s, m, s.seconds_per_pair, in.position_id_per_seconds, start);
      for (size_t i = 0; i < v.t.size(); ++i) c.push(v.t[i], v.h[i], v.w[i]);
      c.end_chunk(v.max);
    } else if (av) {
      if (!in.use_audio_in_video) throw Error("positions: a video with its audio, but use_audio_in_video is off");
      if (video >= in.videos.size() || audio >= in.audio_tokens.size())
        throw Error("positions: a video with audio in the prompt but no grid or clip left for it");
      const VisualSpan& s = in.videos[video++];
      const int64_t na = in.audio_tokens[audio++], nv = span_tokens(s, m);
      body = na + nv;
      const Vision v = vision_positions(s, m, s.seconds_per_pair, in.position_id_per_seconds, start);
      // Interleave by time: a video token goes first while its time row is <= the audio's.
      size_t vi = 0;
      int64_t ai = 0, at = next + 2;
      auto take = [&](bool is_video) {
        const int32_t want = is_video ? tok.video_pad : tok.audio_pad;
        if (at >= n || ids[size_t(at)] != want)
          throw Error("positions: the interleaved video/audio span differs from its grid and clip at token " +
                      std::to_string(at));
        ++at;
      };
      while (vi < v.t.size() && ai < na) {
        if (v.t[vi] <= start + float(ai)) {
          take(true);
          c.push(v.t[vi], v.h[vi], v.w[vi]);
          c.end_chunk(std::max({v.t[vi], v.h[vi], v.w[vi]}));
          ++vi;
        } else {
          take(false);
          const float a = start + float(ai);
          c.push(a, a, a);
          c.end_chunk(a);
          ++ai;
        }
      }
      if (vi < v.t.size()) {
        float mx = 0.f;
        for (; vi < v.t.size(); ++vi) {
          take(true);
          c.push(v.t[vi], v.h[vi], v.w[vi]);
          mx = std::max({mx, v.t[vi], v.h[vi], v.w[vi]});
        }
        c.end_chunk(mx);
      }
      if (ai < na) {
        for (; ai < na; ++ai) {
          take(false);
          const float a = start + float(ai);
          c.push(a, a, a);
        }
        c.end_chunk(start + float(na - 1));
      }
      expect_id(next + 2 + body, tok.audio_end, "<|audio_end|>");
    } else {
      throw Error("positions: <|vision_start|> at token " + std::to_string(next) +
                  " is not followed by an image, video or audio placeholder");
    }
    if (vision) expect_id(next + bos + body + (av ? 1 : 0), tok.vision_end, "<|vision_end|>");
    c.text(bos, c.next_start());
    st = next + bos + body + bos;
  }
  if (image != in.images.size() || video != in.videos.size() || audio != in.audio_tokens.size())
    throw Error("positions: " + std::to_string(in.images.size() - image) + " image(s), " +
                std::to_string(in.videos.size() - video) + " video(s) and " +
                std::to_string(in.audio_tokens.size() - audio) + " clip(s) given have no span in the prompt");
  float mx = -1.f;
  for (size_t i = 0; i < out.t.size(); ++i) mx = std::max({mx, out.t[i], out.h[i], out.w[i]});
  out.next = mx + 1.f;
  return out;
}

void mrope_rotary_tables(const RopeConfig& rope, int head_dim, const float* t, const float* h, const float* w,
                         size_t n, float* cos, float* sin) {
  const int half = head_dim / 2;
  const std::vector<int>& sec = rope.mrope_section;
  if (sec.size() != 3 || sec[0] + sec[1] + sec[2] != half)
    throw Error("positions: the thinker's mrope_section must be 3 numbers summing to head_dim/2 = " +
                std::to_string(half) + " for 3-row positions");
  const float theta = float(rope.theta);
  std::vector<float> inv_freq(static_cast<size_t>(half));
  std::vector<int> row(static_cast<size_t>(half));  // 0 = t, 1 = h, 2 = w
  for (int i = 0; i < half; ++i) {
    // As the 1-D RoPE computes it (cpu_attention.cpp), so text rows get bit-identical angles either way.
    inv_freq[size_t(i)] = 1.0f / std::pow(theta, float(2 * i) / float(head_dim));
    row[size_t(i)] = (i % 3 == 1 && i < 3 * sec[1]) ? 1 : (i % 3 == 2 && i < 3 * sec[2]) ? 2 : 0;
  }
  for (size_t r = 0; r < n; ++r) {
    const float p[3] = {t[r], h[r], w[r]};
    for (int i = 0; i < half; ++i) {
      const float angle = p[row[size_t(i)]] * inv_freq[size_t(i)];
      cos[r * size_t(half) + size_t(i)] = std::cos(angle);
      sin[r * size_t(half) + size_t(i)] = std::sin(angle);
    }
  }
}

}  // namespace omni
