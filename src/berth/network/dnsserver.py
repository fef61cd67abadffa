"""The embedded DNS server's process: one poll loop, UDP and TCP on port 53 of each gateway.

Started by ``dns.ensure_server`` as a fresh ``python3 -IS`` that forks once more (so it is
nobody's child) and keeps ``dns.pid`` locked while it lives. It imports only ``os``,
``select``, ``_socket``, ``_signal``, ``time`` and berth's small ``dns``/``dnsmsg``/``jsonio``
modules, and keeps no state beyond the table and the queries in flight: about 3 MB private
(USS), against 2.4 MB for a bare ``python3 -IS``.

Each query: re-read ``dns.json`` if it changed (stat; SIGHUP from ``write_records`` forces
it), refuse senders that are neither containers in the table nor a gateway, answer our names
(``Records.lookup``: A, AAAA when the entry has ``ip6``, an empty NOERROR for other types;
PTR for a visible container's address), forward the rest. A UDP query is forwarded over
UDP from a fresh socket with a random id (the client's id is put back on the answer, which
must echo the question); a TCP query over TCP. Each upstream gets ``FORWARD_TIMEOUT`` before
the next is tried; when all fail the client gets SERVFAIL. Upstream answers (NXDOMAIN,
SERVFAIL, ...) are relayed as they are, except one larger than the client accepts over UDP,
which becomes an empty truncated answer: no response is ever larger than the client asked
for, and a malformed query gets at most a 12-byte FORMERR (never more than it sent).
"""

import os
import select
import time

import _signal
import _socket

from berth.network import dnsmsg
from berth.network.dns import Records, host_resolvers, records_path, SYSTEMD_RESOLV, HOST_RESOLV

PORT = 53
TTL = 600                 # Docker's; a container's address changes only when it does
FORWARD_TIMEOUT = 2.0
TCP_IDLE = 10.0
MAX_FORWARDS = 512        # in flight; beyond that queries are dropped, clients retry
MAX_TCP_CLIENTS = 64
TICK = 1.0                # retry unbound gateways, notice resolv.conf changes
IDLE = 60.0               # with no container in the table this long, the server leaves

_IN, _OUT = select.POLLIN, select.POLLOUT
_BAD = select.POLLERR | select.POLLHUP | select.POLLNVAL


def main(root, ready_fd):
    """The process's entry (see dns._BOOT): detach, lock, bind, say ready, serve."""
    if os.fork():
        os._exit(0)
    os.chdir("/")
    try:
        server = Server(root)
        pid_ok = server.lock()
    except Exception as err:  # reported to the starter as one line
        _say(ready_fd, f"error {err}")
        os._exit(1)
    if not pid_ok:
        _say(ready_fd, f"error another DNS server runs for {root}")
        os._exit(1)
    _say(ready_fd, f"ready {os.getpid()}")
    server.serve()


def _say(fd, text):
    try:
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)


class Server:
    def __init__(self, root):
        self.root = root
        self.path = records_path(root)
        self.idle_since = None   # since when no container is in the table
        self.idle_stamp = None   # the table file as it was then
        self.stamp = None
        self.resolv_stamp = None
        self.records = Records({})
        self.host = []
        self.search = []
        self.listeners = {}      # gateway -> (udp, tcp)
        self.handlers = {}       # fd -> object with .event(mask) and .deadline
        self.poller = select.poll()
        self.forwards = 0
        self.tcp_clients = 0
        self.next_tick = 0.0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.reload_now = True
        self._pid_fd = -1

    # -- life
    def lock(self):
        import fcntl

        _signal.signal(_signal.SIGHUP, self._on_hup)
        _signal.set_wakeup_fd(self._wake_w)
        path = os.path.join(os.path.dirname(self.path), "dns.pid")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # Callers peek with brief shared locks; only another server would hold it long.
        for _ in range(200):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.01)
        else:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._pid_fd = fd
        self.refresh(time.monotonic())
        return True

    def _on_hup(self, signum, frame):
        self.reload_now = True

    def serve(self):
        self.poller.register(self._wake_r, _IN)
        while True:
            now = time.monotonic()
            wait = self.next_tick - now
            for handler in list(self.handlers.values()):
                if handler.deadline is not None:
                    wait = min(wait, handler.deadline - now)
            try:
                events = self.poller.poll(max(0, int(wait * 1000) + 1))
            except InterruptedError:
                events = []
            now = time.monotonic()
            for fd, mask in events:
                if fd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                handler = self.handlers.get(fd)
                if handler is not None:
                    self._run(handler.event, mask)
            for handler in list(self.handlers.values()):
                if handler.deadline is not None and handler.deadline <= now:
                    self._run(handler.expire)
            if self.reload_now or now >= self.next_tick:
                self.refresh(now)

    def _run(self, method, *args):
        try:
            method(*args)
        except Exception:  # one bad exchange must not end the server
            owner = getattr(method, "__self__", None)
            if owner is not None and not isinstance(owner, _Listener):
                owner.close()

    def add(self, sock, handler, mask=_IN):
        self.handlers[sock.fileno()] = handler
        self.poller.register(sock.fileno(), mask)

    def modify(self, sock, mask):
        self.poller.modify(sock.fileno(), mask)

    def drop(self, sock):
        fd = sock.fileno()
        if fd >= 0 and self.handlers.pop(fd, None) is not None:
            self.poller.unregister(fd)
        sock.close()

    # -- the table
    def refresh(self, now):
        """Re-read the table and the host's resolvers if they changed; bind new gateways,
        close removed ones, retry those not configured yet."""
        forced, self.reload_now = self.reload_now, False
        self.next_tick = now + TICK
        resolv = tuple(_stamp(p) for p in (HOST_RESOLV, SYSTEMD_RESOLV))
        if forced or resolv != self.resolv_stamp:
            self.resolv_stamp = resolv
            self.host, self.search = host_resolvers()
            self.stamp = None
        self.reload_table()
        self._leave_when_idle(now)
        wanted = self.records.gateways
        for gateway in list(self.listeners):
            if gateway not in wanted:
                for sock in self.listeners.pop(gateway):
                    self.drop(sock)
        for gateway in wanted - set(self.listeners):
            self.bind(gateway)

    def _leave_when_idle(self, now):
        """Exit once no container has been in the table for IDLE seconds, or at once when
        the root is gone: `ensure_server` starts a server again when a container needs
        one, so idle roots (and removed ones) keep no process."""
        if not os.path.isdir(self.root):
            os._exit(0)
        stamp = _stamp(self.path)
        if self.records.nets_of or stamp != self.idle_stamp:
            # Busy, or the table changed since idleness began: (re)start the count.
            self.idle_since = None if self.records.nets_of else now
            self.idle_stamp = stamp
        elif self.idle_since is not None and now - self.idle_since >= IDLE:
            os._exit(0)

    def reload_table(self):
        stamp = _stamp(self.path)
        if stamp == self.stamp:
            return
        from berth.spec import jsonio

        try:
            table = jsonio.load_file(self.path)
        except FileNotFoundError:
            table = {}
        except Exception:  # a torn or hand-edited file: keep what we had
            return
        self.stamp = stamp
        self.records = Records(table if isinstance(table, dict) else {}, self.search)

    def bind(self, gateway):
        udp = tcp = None
        try:
            udp = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
            udp.bind((gateway, PORT))
            tcp = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            tcp.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            tcp.bind((gateway, PORT))
            tcp.listen(64)
        except OSError:  # not configured yet (or taken): tried again next tick
            for sock in (udp, tcp):
                if sock is not None:
                    sock.close()
            return
        udp.setblocking(False)
        tcp.setblocking(False)
        self.listeners[gateway] = (udp, tcp)
        self.add(udp, _UdpListener(self, udp))
        self.add(tcp, _TcpListener(self, tcp))

    # -- answering
    def answer(self, data, source, reply, udp):
        """Answer one query from ``source`` through ``reply(bytes)``, now or once forwarded."""
        if self.reload_now:
            self.refresh(time.monotonic())
        else:
            self.reload_table()
        try:
            ident, flags, *_ = dnsmsg.header(data)
        except dnsmsg.Malformed:
            return
        if flags & dnsmsg.QR:
            return  # a response sent to us: never answer those (no loops, no reflection)
        try:
            query = dnsmsg.parse_query(data)
        except dnsmsg.Malformed:
            reply(dnsmsg.build_error(data, dnsmsg.FORMERR))
            return
        if not udp:
            query.udp_size = 65535
        if query.opcode != dnsmsg.QUERY:
            reply(dnsmsg.build_error(query, dnsmsg.NOTIMP))
            return
        records = self.records
        if not records.allowed(source):
            reply(dnsmsg.build_error(query, dnsmsg.REFUSED))
            return
        if query.qclass in (dnsmsg.IN, dnsmsg.ANY):
            local = self.local_answer(query, source)
            if local is not None:
                reply(local)
                return
        if not records.may_forward(source):
            reply(dnsmsg.build_error(query, dnsmsg.REFUSED))
            return
        upstreams = records.upstreams_for(source, self.host)
        if not upstreams:
            reply(dnsmsg.build_error(query, dnsmsg.SERVFAIL))
            return
        if self.forwards >= MAX_FORWARDS:
            return
        kind = _UdpForward if udp else _TcpForward
        kind(self, data, query, reply, upstreams).start()

    def local_answer(self, query, source):
        records = self.records
        ip = dnsmsg.reverse_name(query.name)
        if ip is not None and query.qtype in (dnsmsg.PTR, dnsmsg.ANY):
            name = records.reverse(source, ip)
            if name is not None:
                return dnsmsg.build_answer(query, [(dnsmsg.PTR, dnsmsg.encode_name(name))], TTL)
            return None
        entries = records.lookup(source, query.name)
        if entries is None:
            return None
        answers = []
        for entry in entries:
            if query.qtype in (dnsmsg.A, dnsmsg.ANY):
                answers.append((dnsmsg.A, dnsmsg.ipv4(entry["ip"])))
            if query.qtype in (dnsmsg.AAAA, dnsmsg.ANY) and entry.get("ip6"):
                answers.append((dnsmsg.AAAA, dnsmsg.ipv6(entry["ip6"])))
        return dnsmsg.build_answer(query, answers, TTL)


def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class _Listener:
    deadline = None

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock

    def expire(self):
        pass


class _UdpListener(_Listener):
    def event(self, mask):
        for _ in range(64):  # drain a burst, but let others run
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket
                continue

            def reply(payload, sock=self.sock, addr=addr):
                try:
                    sock.sendto(payload, addr)
                except OSError:
                    pass
            self.server.answer(data, addr[0], reply, udp=True)


class _TcpListener(_Listener):
    def event(self, mask):
        server = self.server
        while True:
            try:
                fd, addr = self.sock._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0, fd)
            if server.tcp_clients >= MAX_TCP_CLIENTS:
                conn.close()
                continue
            conn.setblocking(False)
            _TcpClient(server, conn, addr[0])


class _TcpClient:
    """One client connection: length-prefixed queries in, answers out as they are ready
    (RFC 7766 lets them overtake each other; the ids tell them apart)."""

    def __init__(self, server, sock, source):
        self.server = server
        self.sock = sock
        self.source = source
        self.inbuf = b""
        self.outbuf = b""
        self.pending = 0
        self.eof = False
        self.closed = False
        self.deadline = time.monotonic() + TCP_IDLE
        server.tcp_clients += 1
        server.add(sock, self)

    def event(self, mask):
        if mask & _BAD:  # gone both ways (or broken): nobody to answer
            return self.close()
        if mask & _IN:
            try:
                chunk = self.sock.recv(65537)
            except (BlockingIOError, InterruptedError):
                chunk = None
            except OSError:
                return self.close()
            if chunk == b"":
                self.eof = True
            elif chunk:
                self.inbuf += chunk
                self.deadline = time.monotonic() + TCP_IDLE
                self._queries()
        if mask & _OUT and self.outbuf:
            self._flush()
        self._settle()

    def _queries(self):
        while len(self.inbuf) >= 2:
            size = int.from_bytes(self.inbuf[:2], "big")
            if len(self.inbuf) < 2 + size:
                break
            data, self.inbuf = self.inbuf[2:2 + size], self.inbuf[2 + size:]
            self.pending += 1
            self.server.answer(data, self.source, self._reply, udp=False)

    def _reply(self, payload):
        self.pending -= 1
        if self.closed:
            return
        self.outbuf += len(payload).to_bytes(2, "big") + payload
        self._flush()
        self._settle()

    def _flush(self):
        try:
            sent = self.sock.send(self.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.outbuf = b""
            return self.close()
        self.outbuf = self.outbuf[sent:]

    def _settle(self):
        if self.closed:
            return
        if self.eof and not self.outbuf and self.pending <= 0:
            return self.close()
        mask = (0 if self.eof else _IN) | (_OUT if self.outbuf else 0)
        self.server.modify(self.sock, mask)

    def expire(self):
        self.close()

    def close(self):
        if not self.closed:
            self.closed = True
            self.server.tcp_clients -= 1
            self.server.drop(self.sock)


class _Forward:
    """One query on its way to the upstreams, tried in order."""

    def __init__(self, server, data, query, reply, upstreams):
        self.server = server
        self.data = data
        self.query = query
        self.reply = reply
        self.upstreams = list(upstreams)
        self.sock = None
        self.deadline = None
        self.done = False
        self.ident = int.from_bytes(os.urandom(2), "big")
        server.forwards += 1

    def start(self):
        while self.upstreams:
            upstream = self.upstreams.pop(0)
            self.deadline = time.monotonic() + FORWARD_TIMEOUT
            try:
                self.open(upstream)
                return
            except OSError:
                self._drop_sock()
        self.finish(dnsmsg.build_error(self.query, dnsmsg.SERVFAIL))

    def next(self):
        self._drop_sock()
        self.start()

    def expire(self):
        self.next()

    def relay(self, answer):
        if not dnsmsg.response_matches(answer, self.ident, self.query.question):
            return False
        answer = dnsmsg.with_id(answer, self.query.id)
        if len(answer) > self.query.udp_size:
            answer = dnsmsg.build_answer(self.query, [], 0, max_size=0)
        self.finish(answer)
        return True

    def finish(self, answer):
        if self.done:
            return
        self.done = True
        self._drop_sock()
        self.server.forwards -= 1
        self.reply(answer)

    def close(self):  # after an unexpected error: the client gets SERVFAIL
        self.finish(dnsmsg.build_error(self.query, dnsmsg.SERVFAIL))

    def _drop_sock(self):
        if self.sock is not None:
            self.server.drop(self.sock)
            self.sock = None
        self.deadline = None


class _UdpForward(_Forward):
    def open(self, upstream):
        self.sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        self.sock.connect(upstream)  # a connected socket takes answers from it alone
        self.sock.send(dnsmsg.with_id(self.data, self.ident))
        self.server.add(self.sock, self)

    def event(self, mask):
        for _ in range(16):
            try:
                answer = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP port unreachable and friends: the next upstream
                return self.next()
            if self.relay(answer):
                return


class _TcpForward(_Forward):
    def open(self, upstream):
        self.sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        err = self.sock.connect_ex(upstream)
        if err not in (0, 115):  # EINPROGRESS
            raise OSError(err, os.strerror(err))
        self.out = len(self.data).to_bytes(2, "big") + dnsmsg.with_id(self.data, self.ident)
        self.buf = b""
        self.server.add(self.sock, self, _OUT)

    def event(self, mask):
        if self.out:
            if self.sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR):
                return self.next()
            try:
                self.out = self.out[self.sock.send(self.out):]
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return self.next()
            if not self.out:
                self.server.modify(self.sock, _IN)
            return
        try:
            chunk = self.sock.recv(65537)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self.next()
        if not chunk:
            return self.next()
        self.buf += chunk
        if len(self.buf) >= 2:
            size = int.from_bytes(self.buf[:2], "big")
            if len(self.buf) >= 2 + size and not self.relay(self.buf[2:2 + size]):
                self.next()
