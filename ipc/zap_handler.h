// ZAP (ZeroMQ RFC 27) handler that admits ipc peers by their kernel credentials and CURVE clients by key.
// libzmq passes an ipc peer's SO_PEERCRED as the ZAP "address" ending in ":uid:gid:pid": the uid and the primary
// gid. The supplementary groups of the peer are looked up for its uid in the group database (getgrouplist), so
// that a user added with `usermod -aG omnid NAME` is admitted; this is the database's membership, which a new
// login of that user also gets (the kernel's list of the connecting process is not visible through libzmq).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace zmq {
class context_t;
}

namespace omni::ipc {

struct ZapPolicy {
  std::vector<uid_t> allowed_uids;  // with allowed_gids: an ipc peer needs its uid or one of its groups listed
  std::vector<gid_t> allowed_gids;  // both empty: ipc peers are not filtered
  std::vector<std::string> curve_client_keys;  // Z85; empty: any CURVE client that completed the handshake
  // Called on the ZAP thread for every refused peer with the reason and the peer ("uid:N gid:M pid:P" or the
  // key: the ZAP address, e.g. "...:uid:gid:pid"), so the daemon can log who was turned away. May be empty.
  std::function<void(const std::string& reason, const std::string& peer)> on_denied;
  // The groups of a uid besides `primary` (tests pass their own); empty: the group database (group_list_of).
  std::function<std::vector<gid_t>(uid_t uid, gid_t primary)> groups_of;
};

// The supplementary groups of the user `uid` (its passwd entry's name) from the group database, `primary`
// included; only `primary` when the uid has no passwd entry.
std::vector<gid_t> group_list_of(uid_t uid, gid_t primary);

// The decision for one ZAP request, separate from the socket plumbing so it can be unit-tested.
struct ZapDecision {
  bool allowed;
  std::string reason;   // status text ("OK" or why not)
  std::string user_id;  // "uid:N" for ipc peers, the Z85 key for CURVE clients
};
ZapDecision decide_zap(const ZapPolicy& policy, const std::string& mechanism, const std::string& address,
                       const std::vector<std::string>& credentials);

// Binds inproc://zeromq.zap.01 in `context` and answers ZAP requests on its own thread until destroyed.
class ZapAuthenticator {
 public:
  ZapAuthenticator(zmq::context_t& context, ZapPolicy policy);
  ~ZapAuthenticator();
  ZapAuthenticator(const ZapAuthenticator&) = delete;
  ZapAuthenticator& operator=(const ZapAuthenticator&) = delete;
  std::uint64_t denied() const { return denied_.load(); }

 private:
  void run();
  zmq::context_t& context_;
  ZapPolicy policy_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> denied_{0};
  std::thread thread_;
  std::atomic<int> bound_{0};  // 1 bound, -1 failed
};

}  // namespace omni::ipc
