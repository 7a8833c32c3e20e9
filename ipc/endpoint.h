// ZeroMQ endpoint checks shared by the server and the client: which transports are allowed, ipc:// socket
// directories and file modes, and probing whether a daemon listens on an ipc socket file.
#pragma once

#include <string>

namespace omni::ipc {

enum class Transport { ipc, tcp };

struct ParsedEndpoint {
  Transport transport;
  std::string address;  // ipc: the socket file path; tcp: host:port
};

// Throws SetupError for anything but ipc://PATH and tcp://HOST:PORT, for abstract ipc sockets (ipc://@name:
// no file permissions protect them) and for paths too long for sockaddr_un.
ParsedEndpoint parse_endpoint(const std::string& endpoint);

// Creates the missing directories of the socket path with mode 0750 (existing ones are left alone).
// Throws SetupError naming the directory on failure.
void create_socket_directory(const std::string& socket_path);

enum class SocketProbe { listening, absent, refused, permission_denied, not_a_socket, other_error };

// Connects a plain AF_UNIX stream socket to path to learn whether anyone is listening there.
SocketProbe probe_unix_socket(const std::string& path, int* error_number = nullptr);

}  // namespace omni::ipc
