// CudaTuning::from_env, the one reader of the OMNI_CUDA_* switches (cuda_tuning.h). Needs no device.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "cuda/cuda_tuning.h"
#include "omni/errors.h"

namespace omni::test {
namespace {

// Sets one variable for the scope of a test and restores what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* v = std::getenv(name)) saved_ = v, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_, saved_.c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::string saved_;
  bool had_ = false;
};

TEST(CudaTuning, DefaultsAreTheMeasuredWinners) {
  const cuda::CudaTuning t;
  EXPECT_TRUE(t.pdl);
  EXPECT_EQ(t.gemv_hoist, 5);
  EXPECT_TRUE(t.gemv_wide);
  EXPECT_TRUE(t.router_hoist);
  EXPECT_TRUE(t.gateup_split);
  EXPECT_TRUE(t.down_rows);
  EXPECT_EQ(t.decode_layer, 2);
  EXPECT_TRUE(t.moe_tc);
  EXPECT_TRUE(t.moe_mma);
  EXPECT_TRUE(t.attn_mma);
  EXPECT_TRUE(t.qstream);
  EXPECT_EQ(t.qgateup_min_blocks, 3);
}

TEST(CudaTuning, EnvironmentSwitchesAreApplied) {
  ScopedEnv a("OMNI_CUDA_FUSED_LAYER", "0"), b("OMNI_CUDA_GEMV_HOIST", "4"), c("OMNI_CUDA_PDL", "0"),
      d("OMNI_CUDA_QGATEUP_MINB", "2"), e("OMNI_CUDA_DOWN_ROWS", "1");
  const cuda::CudaTuning t = cuda::CudaTuning::from_env();
  EXPECT_EQ(t.decode_layer, 0);
  EXPECT_EQ(t.gemv_hoist, 4);
  EXPECT_FALSE(t.pdl);
  EXPECT_EQ(t.qgateup_min_blocks, 2);
  EXPECT_FALSE(t.down_rows);
  EXPECT_TRUE(t.gateup_split);  // not set: the default
}

TEST(CudaTuning, RemovedOrUnknownValueIsAnErrorNamingTheVariable) {
  ScopedEnv a("OMNI_CUDA_FUSED_LAYER", "1");  // the persistent kernel, removed
  try {
    cuda::CudaTuning::from_env();
    FAIL() << "OMNI_CUDA_FUSED_LAYER=1 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("OMNI_CUDA_FUSED_LAYER=1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("0 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace omni::test
