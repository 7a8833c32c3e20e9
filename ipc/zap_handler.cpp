#include "ipc/zap_handler.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <zmq.hpp>

#include "ipc/control_server.h"

namespace omni::ipc {

namespace {

// "...:uid:gid:pid" -> uid, gid. false when the address carries no credentials (tcp peers).
bool peer_credentials(const std::string& address, unsigned long& uid, unsigned long& gid) {
  std::vector<std::string> parts;
  std::size_t end = address.size();
  for (int i = 0; i < 3; ++i) {
    std::size_t colon = address.rfind(':', end == 0 ? 0 : end - 1);
    if (colon == std::string::npos) return false;
    parts.push_back(address.substr(colon + 1, end - colon - 1));
    end = colon;
  }
  for (const auto& p : parts)
    if (p.empty() || !std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  uid = std::stoul(parts[2]);
  gid = std::stoul(parts[1]);
  return true;
}

template <class Id>
std::string join_ids(const std::vector<Id>& ids) {
  if (ids.empty()) return "none";
  std::string out;
  for (Id id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

}  // namespace

std::vector<gid_t> group_list_of(uid_t uid, gid_t primary) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) return {primary};
  // getgrouplist reports the count it needs when the array is too small; a group may be added in between.
  std::vector<gid_t> groups(32);
  for (int attempt = 0; attempt < 4; ++attempt) {
    int count = static_cast<int>(groups.size());
    if (::getgrouplist(found->pw_name, primary, groups.data(), &count) >= 0) {
      groups.resize(static_cast<std::size_t>(count));
      return groups;
    }
    if (count <= static_cast<int>(groups.size()) || count > 65536) break;
    groups.resize(static_cast<std::size_t>(count));
  }
  return {primary};
}

ZapDecision decide_zap(const ZapPolicy& policy, const std::string& mechanism, const std::string& address,
                       const std::vector<std::string>& credentials) {
  std::string user_id;
  if (mechanism == "CURVE") {
    if (credentials.empty() || credentials[0].size() != 32) return {false, "no CURVE client key", ""};
    char z85[41] = {};
    zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(credentials[0].data()), 32);
    user_id = z85;
    if (!policy.curve_client_keys.empty() &&
        std::find(policy.curve_client_keys.begin(), policy.curve_client_keys.end(), user_id) ==
            policy.curve_client_keys.end())
      return {false, "CURVE client key not allowed", ""};
  } else if (mechanism != "NULL") {
    return {false, "mechanism " + mechanism + " not supported", ""};
  }
  if (policy.allowed_uids.empty() && policy.allowed_gids.empty()) return {true, "OK", user_id};
  unsigned long uid = 0, gid = 0;
  if (!peer_credentials(address, uid, gid)) {
    // tcp peers carry no kernel credentials; with CURVE the key check above is their admission.
    if (mechanism == "CURVE") return {true, "OK", user_id};
    return {false, "peer credentials unavailable", ""};
  }
  auto listed = [](const auto& list, unsigned long id) { return std::find(list.begin(), list.end(), id) != list.end(); };
  bool ok = listed(policy.allowed_uids, uid) || listed(policy.allowed_gids, gid);
  std::vector<gid_t> groups;
  if (!ok && !policy.allowed_gids.empty()) {
    groups = policy.groups_of ? policy.groups_of(static_cast<uid_t>(uid), static_cast<gid_t>(gid))
                              : group_list_of(static_cast<uid_t>(uid), static_cast<gid_t>(gid));
    ok = std::any_of(groups.begin(), groups.end(), [&](gid_t g) { return listed(policy.allowed_gids, g); });
  }
  if (!ok)
    return {false,
            "uid " + std::to_string(uid) + " gid " + std::to_string(gid) + " not allowed (groups " +
                (groups.empty() ? std::to_string(gid) : join_ids(groups)) +
                "; ipc.allow_uids / ipc.allow_gids admit uids " + join_ids(policy.allowed_uids) +
                " and groups " + join_ids(policy.allowed_gids) + ")",
            ""};
  return {true, "OK", user_id.empty() ? "uid:" + std::to_string(uid) : user_id};
}

ZapAuthenticator::ZapAuthenticator(zmq::context_t& context, ZapPolicy policy)
    : context_(context), policy_(std::move(policy)) {
  thread_ = std::thread([this] { run(); });
  while (bound_.load() == 0) std::this_thread::yield();
  if (bound_.load() < 0) {
    thread_.join();
    throw SetupError("cannot bind the ZAP handler at inproc://zeromq.zap.01 (another one in this context?)");
  }
}

ZapAuthenticator::~ZapAuthenticator() {
  stop_ = true;
  thread_.join();
}

void ZapAuthenticator::run() {
  zmq::socket_t rep(context_, zmq::socket_type::rep);
  try {
    rep.set(zmq::sockopt::linger, 0);
    rep.bind("inproc://zeromq.zap.01");
  } catch (const zmq::error_t&) {
    bound_ = -1;
    return;
  }
  bound_ = 1;
  while (!stop_) {
    zmq::pollitem_t item{rep.handle(), 0, ZMQ_POLLIN, 0};
    try {
      if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) == 0) continue;
      std::vector<std::string> frames;
      zmq::message_t msg;
      do {
        if (!rep.recv(msg, zmq::recv_flags::none)) break;
        frames.push_back(msg.to_string());
      } while (msg.more());
      // version, request id, domain, address, routing id, mechanism, credentials...
      ZapDecision d{false, "malformed ZAP request", ""};
      if (frames.size() >= 6 && frames[0] == "1.0")
        d = decide_zap(policy_, frames[5], frames[3], std::vector<std::string>(frames.begin() + 6, frames.end()));
      if (!d.allowed) {
        ++denied_;
        if (policy_.on_denied) policy_.on_denied(d.reason, frames.size() > 3 ? frames[3] : std::string());
      }
      std::string request_id = frames.size() > 1 ? frames[1] : "";
      rep.send(zmq::buffer(std::string("1.0")), zmq::send_flags::sndmore);
      rep.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
      rep.send(zmq::buffer(std::string(d.allowed ? "200" : "400")), zmq::send_flags::sndmore);
      rep.send(zmq::buffer(d.reason), zmq::send_flags::sndmore);
      rep.send(zmq::buffer(d.user_id), zmq::send_flags::sndmore);
      rep.send(zmq::message_t(), zmq::send_flags::none);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      // EINTR or a broken exchange: REP state may be off; the next poll resynchronises or the peer retries.
    }
  }
}

}  // namespace omni::ipc
