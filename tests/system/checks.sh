#!/bin/bash
# Runs inside the booted Debian system (tests/system/run.sh starts it as the oneshot unit package-checks.service): checks the
# installed omnid package under systemd as PID 1, one PASS/FAIL line per check, then "N passed, M failed".
# /root/omnid-new.deb is the package under test; the system was set up with the same build packaged as the
# previous version (for the upgrade check), the tiny model in /var/lib/omnid/models/tiny-a and an edited
# /etc/omnid/omnid.yaml that uses it.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_PAGER= LC_ALL=C.UTF-8
RESULTS=/var/log/omnid-system-test.txt
: >"$RESULTS"
passed=0 failed=0
say() { echo "$*" | tee -a "$RESULTS" >/dev/console; }
check() {  # check NAME FUNCTION: FUNCTION prints why it failed on stdout
  local name=$1 out
  if out=$("$2" 2>&1); then
    passed=$((passed + 1)); say "PASS $name${out:+: $(echo "$out" | tail -1)}"
  else
    failed=$((failed + 1)); say "FAIL $name: $(echo "$out" | tail -4 | tr '\n' ' ')"
  fi
}
finish() {
  say "$passed passed, $failed failed"
  journalctl -u omnid --no-pager -o short-precise >/var/log/omnid-journal.txt 2>&1
  systemctl poweroff --no-block
}
trap finish EXIT

prop() { systemctl show -p "$1" --value omnid.service; }
main_pid() { prop MainPID; }
# Waits up to $1 s for omnid to be active with a main PID other than $2 (0: any).
wait_active_new() {
  local limit=$1 old=$2 i
  for ((i = 0; i < limit * 5; i++)); do
    local pid; pid=$(main_pid)
    if [ "$(prop ActiveState)" = active ] && [ "$pid" != 0 ] && [ "$pid" != "$old" ]; then return 0; fi
    sleep 0.2
  done
  echo "omnid not active with a new PID after $limit s (state $(prop ActiveState)/$(prop SubState), pid $(main_pid), was $old)"
  return 1
}
journal_since() { journalctl -u omnid --no-pager -o cat --since "$1" "${@:2}"; }
as() { local user=$1; shift; runuser -u "$user" -- "$@"; }
cursor_time() { date '+%Y-%m-%d %H:%M:%S'; }

CONFIG=/etc/omnid/omnid.yaml
cp "$CONFIG" /root/omnid.yaml.good

# --- start, READY=1, STATUS= ----------------------------------------------------------------------------------
c_boot() {
  [ "$(systemctl is-enabled omnid)" = enabled ] || { echo "not enabled: $(systemctl is-enabled omnid)"; return 1; }
  wait_active_new 120 0
}
c_start() {
  systemctl stop omnid || return 1
  local t; t=$(cursor_time); sleep 1
  systemctl start omnid || { echo "systemctl start failed"; return 1; }
  # Type=notify: start returns when READY=1 came; active (not activating) right after it proves that.
  local state; state=$(prop ActiveState)/$(prop SubState)
  [ "$state" = active/running ] || { echo "after start: $state"; return 1; }
  journal_since "$t" | grep -q '^ready: ' || { echo "no 'ready:' line after the start"; return 1; }
  echo "$(journal_since "$t" | grep '^descriptor limit' | tail -1); $(journal_since "$t" | grep '^ready: ' | tail -1)"
}
c_status_text() {
  local text; text=$(systemctl status omnid --no-pager 2>&1 | grep 'Status: "')
  [ -n "$text" ] || { systemctl status omnid --no-pager | head -5; return 1; }
  echo "$text" | sed 's/^ *//'
}
check "systemd starts omnid at boot (package enabled it, model configured)" c_boot
check "systemctl start returns once READY=1 arrived" c_start
check "systemctl status shows omnid's STATUS= text" c_status_text

# --- access: supplementary group admitted, others refused and told ---------------------------------------------
c_alice_status() { as alice omnictl status; }
c_alice_ask() {
  local out; out=$(as alice omnictl --timeout 120000 ask "Hello, who are you?" --no-speak --wait) || { echo "$out"; return 1; }
  echo "answer: $(echo "$out" | head -c 60 | tr '\n' ' ')"
}
c_bob_refused() {
  local t; t=$(cursor_time); sleep 1
  local start=$SECONDS out rc=0
  out=$(as bob omnictl --timeout 20000 status 2>&1) || rc=$?
  [ $rc = 3 ] || { echo "omnictl exit $rc (expected 3): $out"; return 1; }
  echo "$out" | grep -q '^omnictl: access denied: ' || { echo "not an access-denied message: $out"; return 1; }
  [ $((SECONDS - start)) -lt 10 ] || { echo "took $((SECONDS - start)) s"; return 1; }
  local uid; uid=$(id -u bob)
  local line; line=$(journal_since "$t" -p warning | grep "ipc: refused a connection" | grep "uid $uid " | head -1)
  [ -n "$line" ] || { echo "no refusal of uid $uid in the journal at priority warning or above"; return 1; }
  echo "$out | journal: $line"
}
check "omnictl status works for alice (usermod -aG omnid)" c_alice_status
check "omnictl ask --wait works for alice" c_alice_ask
check "bob (not in the group) is refused with 'access denied', the refusal in the journal" c_bob_refused

# --- the client library for apps: in the linker cache (the package's ldconfig trigger), with its header and CMake file --
c_client_library() {
  local line; line=$(ldconfig -p | grep 'libomnid-client\.so\.2 ')
  [ -n "$line" ] || { echo "libomnid-client.so.2 is not in the linker cache (ldconfig -p)"; return 1; }
  local f
  for f in /usr/include/omnid/client.h /usr/lib/*/cmake/omnid-client/omnid-client-config.cmake /usr/lib/*/pkgconfig/omnid-client.pc; do
    [ -f "$f" ] || { echo "missing: $f"; return 1; }
  done
  echo "$(echo "$line" | sed 's/^[[:space:]]*//')"
}
check "the client library is in the linker cache, with its header, CMake package and pkg-config file" c_client_library

# --- reload ------------------------------------------------------------------------------------------------------
c_reload_good() {
  local pid t; pid=$(main_pid); t=$(cursor_time); sleep 1
  sed -i 's/^  heartbeat_ms: .*/  heartbeat_ms: 2000/' "$CONFIG"
  systemctl reload omnid || return 1
  [ "$(main_pid)" = "$pid" ] || { echo "PID changed"; return 1; }
  journal_since "$t" | grep -q "configuration reloaded from $CONFIG" || { echo "no 'configuration reloaded' line"; return 1; }
  prop StatusText
}
c_reload_bad() {
  local pid t; pid=$(main_pid); t=$(cursor_time); sleep 1
  sed -i 's/^    threshold: .*/    threshold: 7/' "$CONFIG"
  systemctl reload omnid
  [ "$(main_pid)" = "$pid" ] && [ "$(prop ActiveState)" = active ] || { echo "omnid not running on after a bad reload"; return 1; }
  local err; err=$(journal_since "$t" -p err | grep "the running one stays" | head -1)
  [ -n "$err" ] || { echo "no reload error at priority err"; journal_since "$t"; return 1; }
  as alice omnictl status >/dev/null || { echo "omnictl status fails after the bad reload"; return 1; }
  cp /root/omnid.yaml.good "$CONFIG"
  systemctl reload omnid
  echo "$err"
}
check "systemctl reload applies a good file (same PID)" c_reload_good
check "systemctl reload keeps the running configuration on a bad file, the error in the journal" c_reload_bad

# --- descriptor limit, thousands of idle connections ----------------------------------------------------------
c_nofile() {
  local pid; pid=$(main_pid)
  local soft hard; read -r soft hard < <(awk '/^Max open files/ {print $4, $5}' /proc/$pid/limits)
  [ "$soft" = "$hard" ] || { echo "soft $soft, hard $hard"; return 1; }
  echo "Max open files $soft (soft = hard)"
}
c_idle_connections() {
  local pid; pid=$(main_pid)
  ulimit -n "$(ulimit -Hn)"   # this side holds the 3000 connections too
  python3 - "$pid" <<'PY' || return 1
import os, socket, subprocess, sys, time
pid = sys.argv[1]
conns = []
for _ in range(3000):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("/run/omnid/control.sock")
    conns.append(s)
time.sleep(1)
fds = len(os.listdir(f"/proc/{pid}/fd"))
r = subprocess.run(["runuser", "-u", "alice", "--", "omnictl", "--timeout", "10000", "status"], capture_output=True, text=True)
if r.returncode != 0 or fds < 3000:
    print(f"with 3000 idle connections: omnid holds {fds} descriptors, omnictl exit {r.returncode}: {r.stderr.strip()}")
    sys.exit(1)
print(f"omnid held {fds} descriptors and answered alice")
PY
  [ "$(main_pid)" = "$pid" ] && [ "$(prop ActiveState)" = active ] || { echo "omnid died"; return 1; }
}
check "the descriptor limit is raised to the hard limit" c_nofile
check "3000 idle connections to the control socket: omnid still answers" c_idle_connections

# --- sandbox on the live process -------------------------------------------------------------------------------
c_privs() {
  local pid; pid=$(main_pid)
  local nnp sec cap; nnp=$(awk '/^NoNewPrivs/ {print $2}' /proc/$pid/status)
  sec=$(awk '/^Seccomp:/ {print $2}' /proc/$pid/status); cap=$(awk '/^CapEff/ {print $2}' /proc/$pid/status)
  [ "$nnp" = 1 ] && [ "$sec" = 2 ] && [ "$cap" = 0000000000000000 ] || { echo "NoNewPrivs $nnp Seccomp $sec CapEff $cap"; return 1; }
  echo "NoNewPrivs 1, Seccomp 2 (filter), CapEff 0, user $(stat -c %U /proc/$pid)"
}
c_writes() {
  # In omnid's mount namespace even root cannot write outside omnid's directories (ProtectSystem=strict,
  # ProtectHome, read-only bind mounts): writes fail with EROFS or EACCES whatever the file modes say.
  local pid; pid=$(main_pid)
  local uid gid; uid=$(id -u omnid); gid=$(id -g omnid)
  local bad="" err
  for dir in / /etc /etc/omnid /usr /usr/bin /var /var/lib /var/log /var/cache /opt /srv /root /home /home/alice; do
    if err=$(nsenter -t "$pid" -m -- sh -c "echo x > '$dir/.omnid-write-test'" 2>&1); then
      bad="$bad $dir"; nsenter -t "$pid" -m -- rm -f "$dir/.omnid-write-test"
    fi
  done
  [ -z "$bad" ] || { echo "writable as root in omnid's mount namespace:$bad"; return 1; }
  for dir in /var/lib/omnid /run/omnid; do
    nsenter -t "$pid" -m -S "$uid" -G "$gid" -- sh -c "echo x > '$dir/.omnid-write-test' && rm '$dir/.omnid-write-test'" ||
      { echo "omnid cannot write $dir"; return 1; }
  done
  echo "read-only even for root: / /etc /usr /var /var/lib /var/log /var/cache /opt /srv; /root /home hidden; omnid writes /var/lib/omnid /run/omnid"
}
c_devices() {
  local cg; cg=/sys/fs/cgroup$(awk -F: '$1 == "0" {print $3}' /proc/$(main_pid)/cgroup)
  [ -c /dev/net/tun ] || { echo "/dev/net/tun missing in this container: nothing to test with"; return 1; }
  # Control: outside omnid's cgroup the device opens (ENOTTY/EBADFD-free open is enough).
  sh -c 'exec 3<>/dev/net/tun' || { echo "/dev/net/tun does not open even outside omnid's cgroup"; return 1; }
  if sh -c "echo \$\$ > '$cg/cgroup.procs' && exec 3<>/dev/net/tun" 2>/dev/null; then
    echo "/dev/net/tun opened inside omnid's cgroup ($cg): DevicePolicy=closed does not apply"; return 1
  fi
  echo "/dev/net/tun refused inside $cg, opens outside"
}
c_security() {
  local line; line=$(systemd-analyze security omnid.service --no-pager 2>&1 | grep 'Overall exposure level')
  local level; level=$(echo "$line" | grep -oE '[0-9]+\.[0-9]+' | head -1)
  [ -n "$level" ] || { echo "no exposure level: $line"; return 1; }
  awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || { echo "$line"; return 1; }
  echo "$line"
}
check "sandbox: no new privileges, seccomp filter active, no capabilities" c_privs
check "sandbox: no writes outside /var/lib/omnid and /run/omnid" c_writes
check "sandbox: devices closed (DevicePolicy=closed on the live cgroup)" c_devices
check "systemd-analyze security omnid rates 2.0 or better" c_security

# --- journal priorities ----------------------------------------------------------------------------------------
c_priorities() {
  journalctl -u omnid -b -p 6..6 -o cat | grep -q '^ready: ' || { echo "'ready:' not at priority info"; return 1; }
  ! journalctl -u omnid -b -p 0..5 -o cat | grep -q '^ready: ' || { echo "'ready:' logged above info"; return 1; }
  journalctl -u omnid -b -p 3..3 -o cat | grep -q 'the running one stays' || { echo "reload error not at err"; return 1; }
  journalctl -u omnid -b -p 4..4 -o cat | grep -q 'ipc: refused a connection' || { echo "refusal not at warning"; return 1; }
  echo "info: ready, warning: refusals, err: reload errors"
}
check "journal priorities: info as info, refusals as warning, errors as err" c_priorities

# --- watchdog, crash, stop during an answer --------------------------------------------------------------------
c_watchdog() {
  local pid t; pid=$(main_pid); t=$(cursor_time)
  kill -STOP "$pid"
  wait_active_new 90 "$pid" || return 1
  journalctl -b --no-pager -o cat --since "$t" | grep -q 'Watchdog timeout' || { echo "no 'Watchdog timeout' in the journal"; return 1; }
  echo "restarted after the watchdog fired (pid $pid -> $(main_pid))"
}
c_segv() {
  local pid t n; pid=$(main_pid); t=$(cursor_time); n=$(prop NRestarts)
  kill -SEGV "$pid"
  wait_active_new 60 "$pid" || return 1
  [ "$(prop NRestarts)" -gt "$n" ] || { echo "NRestarts $n -> $(prop NRestarts)"; return 1; }
  journalctl -b --no-pager -o cat --since "$t" | grep -qE 'code=(dumped|killed), status=11/SEGV' || { echo "no SEGV exit in the journal"; return 1; }
  echo "restarted by Restart=on-failure (pid $pid -> $(main_pid))"
}
c_stop_mid_answer() {
  # A long text spoken verbatim keeps the turn running for seconds (an ask to the random tiny model can end
  # within half a second); stop as soon as it is seen running.
  local text; text=$(printf 'The robot reads this long sentence aloud, word by word. %.0s' $(seq 1 40))
  as alice omnictl say "$text" >/dev/null || { echo "say failed"; return 1; }
  local state="" i
  for i in $(seq 1 100); do
    state=$(as alice omnictl --json status | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p')
    case "$state" in thinking|speaking) break;; esac
    sleep 0.02
  done
  case "$state" in thinking|speaking) ;; *) echo "no answer running when stopping (state '$state')"; return 1;; esac
  local start; start=$(date +%s%N)
  systemctl stop omnid
  local ms=$((($(date +%s%N) - start) / 1000000))
  local result status; result=$(prop Result); status=$(prop ExecMainStatus)
  systemctl start omnid
  [ "$result" = success ] && [ "$status" = 0 ] || { echo "Result=$result ExecMainStatus=$status after ${ms} ms"; return 1; }
  [ "$ms" -lt 10000 ] || { echo "stop took $ms ms (TimeoutStopSec=10)"; return 1; }
  echo "stopped while $state in $ms ms, exit 0"
}
check "SIGSTOP: the watchdog restarts omnid" c_watchdog
check "SIGSEGV: Restart= restarts omnid" c_segv
check "systemctl stop during an answer ends cleanly within the stop timeout" c_stop_mid_answer

# --- upgrade, purge --------------------------------------------------------------------------------------------
c_upgrade() {
  wait_active_new 60 0 || return 1
  local pid old new; pid=$(main_pid); old=$(dpkg-query -W -f '${Version}' omnid)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/omnid-new.deb >/root/upgrade.log 2>&1 ||
    { tail -5 /root/upgrade.log; return 1; }
  new=$(dpkg-query -W -f '${Version}' omnid)
  [ "$new" != "$old" ] || { echo "version still $old"; return 1; }
  cmp -s "$CONFIG" /root/omnid.yaml.good || { echo "the edited $CONFIG changed on upgrade"; return 1; }
  wait_active_new 60 "$pid" || return 1
  echo "$old -> $new, edited config kept, restarted (pid $pid -> $(main_pid))"
}
c_purge() {
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -q omnid >/root/purge.log 2>&1 || { tail -5 /root/purge.log; return 1; }
  local left; left=$(find /etc/systemd /usr/lib/systemd /lib/systemd /run/systemd/system -name 'omnid*' 2>/dev/null)
  [ -z "$left" ] || { echo "left behind: $left"; return 1; }
  systemctl list-unit-files --no-legend 'omnid*' | grep -q . && { echo "systemd still lists: $(systemctl list-unit-files --no-legend 'omnid*')"; return 1; }
  [ "$(systemctl show -p LoadState --value omnid.service)" = not-found ] || { echo "LoadState $(systemctl show -p LoadState --value omnid.service)"; return 1; }
  grep -lx omnid /proc/[0-9]*/comm 2>/dev/null | grep -q . && { echo "an omnid process still runs"; return 1; }
  [ ! -e "$CONFIG" ] || { echo "$CONFIG still there"; return 1; }
  echo "no unit file, no enablement link, no process, no conffile"
}
check "upgrade from the previous package keeps the edited config and restarts omnid" c_upgrade
check "apt purge leaves no unit behind" c_purge
