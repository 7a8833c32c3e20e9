// Runs a fuzz target's LLVMFuzzerTestOneInput over files, without libFuzzer (ordinary and ASan builds):
//   replay_<target> [--malloc-limit-mb=N] [--rss-limit-mb=N] [--timeout-s=N] DIR_OR_FILE...
// Every regular file under each directory is one input. The limits are the ones tools/fuzz.sh gives
// libFuzzer: one allocation larger than --malloc-limit-mb, a peak RSS above --rss-limit-mb, or one input
// running longer than --timeout-s fails the run naming the input, as a property violation (abort) or a
// crash of the target does. Exit 0: every input passed (the count is printed).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::size_t g_malloc_limit = 0;  // bytes; 0 = none
const char* g_current = "";     // the input being run, for messages

void* checked_alloc(std::size_t n) {
  if (g_malloc_limit && n > g_malloc_limit) {
    std::fprintf(stderr, "replay: %s: one allocation of %zu bytes exceeds the malloc limit of %zu bytes\n",
                 g_current, n, g_malloc_limit);
    std::abort();
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}

long peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024;
}

}  // namespace

// Every plain new/delete of the process goes through here (libFuzzer's -malloc_limit_mb does the same
// for malloc). Aligned forms are left to the library.
void* operator new(std::size_t n) { return checked_alloc(n); }
void* operator new[](std::size_t n) { return checked_alloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return checked_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  long rss_limit_mb = 0;
  double timeout_s = 0;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--malloc-limit-mb=", 0) == 0) {
      g_malloc_limit = std::size_t(std::stoul(a.substr(18))) << 20;
    } else if (a.rfind("--rss-limit-mb=", 0) == 0) {
      rss_limit_mb = std::stol(a.substr(15));
    } else if (a.rfind("--timeout-s=", 0) == 0) {
      timeout_s = std::stod(a.substr(12));
    } else if (fs::is_directory(a)) {
      for (const auto& e : fs::recursive_directory_iterator(a))
        if (e.is_regular_file()) files.push_back(e.path());
    } else if (fs::is_regular_file(a)) {
      files.push_back(a);
    } else if (!fs::exists(a)) {
      continue;  // a target without regressions yet has no directory
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a directory\n", a.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  double slowest = 0;
  std::string slowest_name;
  for (const fs::path& f : files) {
    const std::string name = f.string();
    g_current = name.c_str();
    std::ifstream in(f, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto t0 = std::chrono::steady_clock::now();
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > slowest) {
      slowest = s;
      slowest_name = name;
    }
    if (timeout_s > 0 && s > timeout_s) {
      std::fprintf(stderr, "replay: %s: took %.2f s, more than the %.0f s timeout\n", name.c_str(), s, timeout_s);
      return 1;
    }
    if (rss_limit_mb > 0 && peak_rss_mb() > rss_limit_mb) {
      std::fprintf(stderr, "replay: %s: peak RSS %ld MB exceeds the %ld MB limit\n", name.c_str(), peak_rss_mb(),
                   rss_limit_mb);
      return 1;
    }
  }
  std::printf("replay: %zu inputs passed; slowest %.3f s (%s); peak RSS %ld MB\n", files.size(), slowest,
              slowest_name.c_str(), peak_rss_mb());
  return 0;
}
