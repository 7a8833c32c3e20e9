#!/usr/bin/env bash
# The video-file fixture of the omni-run tests (tests/fixtures/videos/ball_8fps.mkv and its frames ball/f_NN.png):
# 8 frames of GStreamer's test pattern "ball" (deterministic), 32x32 RGB at 8 fps, stored raw (lossless) in
# Matroska so that decoding gives back exactly the PNG frames. Re-running writes the same frames.
#   tools/make_video_fixture.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures/videos
mkdir -p "$out/ball"
src="videotestsrc pattern=ball num-buffers=8 ! video/x-raw,format=RGB,width=32,height=32,framerate=8/1"
gst-launch-1.0 -q $src ! pngenc ! multifilesink location="$out/ball/f_%02d.png"
gst-launch-1.0 -q $src ! matroskamux ! filesink location="$out/ball_8fps.mkv"
ls -l "$out/ball_8fps.mkv" "$out/ball"
