#include "ipc/endpoint.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ipc/control_server.h"

namespace omni::ipc {

ParsedEndpoint parse_endpoint(const std::string& endpoint) {
  auto starts = [&](const char* p) { return endpoint.rfind(p, 0) == 0; };
  if (starts("ipc://")) {
    std::string path = endpoint.substr(6);
    if (path.empty()) throw SetupError("endpoint '" + endpoint + "' has no socket path");
    if (path[0] == '@')
      throw SetupError("endpoint '" + endpoint +
                       "' is an abstract socket; refused because no file permissions protect it (use a path)");
    if (path.size() >= sizeof(sockaddr_un::sun_path))
      throw SetupError("endpoint '" + endpoint + "': socket path longer than " +
                       std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    return {Transport::ipc, path};
  }
  if (starts("tcp://")) {
    std::string address = endpoint.substr(6);
    if (address.find(':') == std::string::npos)
      throw SetupError("endpoint '" + endpoint + "' needs a port (tcp://HOST:PORT)");
    return {Transport::tcp, address};
  }
  throw SetupError("endpoint '" + endpoint + "': only ipc://PATH and tcp://HOST:PORT (with CURVE) are supported");
}

void create_socket_directory(const std::string& socket_path) {
  auto slash = socket_path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;  // relative file in cwd, or directly under /
  std::string dir = socket_path.substr(0, slash);
  // Walk the path from the root, creating what is missing.
  for (std::size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    struct stat st {};
    if (::stat(part.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) throw SetupError("socket directory '" + part + "' exists and is not a directory");
      continue;
    }
    if (::mkdir(part.c_str(), 0750) != 0 && errno != EEXIST)
      throw SetupError("cannot create socket directory '" + part + "': " + std::strerror(errno));
    // mkdir applies the umask; the mode must be exactly 0750 whatever the umask is.
    if (::chmod(part.c_str(), 0750) != 0)
      throw SetupError("cannot set mode 0750 on socket directory '" + part + "': " + std::strerror(errno));
  }
}

SocketProbe probe_unix_socket(const std::string& path, int* error_number) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (error_number) *error_number = errno;
    if (errno == ENOENT) return SocketProbe::absent;
    if (errno == EACCES) return SocketProbe::permission_denied;
    return SocketProbe::other_error;
  }
  if (!S_ISSOCK(st.st_mode)) return SocketProbe::not_a_socket;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (error_number) *error_number = errno;
    return SocketProbe::other_error;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::close(fd);
  if (error_number) *error_number = rc == 0 ? 0 : err;
  if (rc == 0) return SocketProbe::listening;
  if (err == ECONNREFUSED) return SocketProbe::refused;
  if (err == EACCES || err == EPERM) return SocketProbe::permission_denied;
  if (err == ENOENT) return SocketProbe::absent;
  return SocketProbe::other_error;
}

}  // namespace omni::ipc
