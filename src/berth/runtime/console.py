"""Terminals: sending a pty master over a console socket (SCM_RIGHTS), and relaying one.

Imported only when a container asks for a terminal: ``socket`` is costly to import.
"""

from berth.sys import fastos as os


def connect(path):
    """Connect to a console socket; returns the fd (inheritable by the init)."""
    import socket

    from berth.errors import InvalidArgument

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise InvalidArgument(f"--console-socket {path}: {err.strerror}") from None
    return sock.detach()


def send_fd(sock_fd, fd, name):
    import socket

    sock = socket.socket(fileno=sock_fd)
    try:
        sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                        fd.to_bytes(4, "little"))])
    finally:
        sock.detach()


def recv_fd(sock_fd):
    """Receive one fd sent with send_fd; returns (fd, name)."""
    import array
    import socket

    sock = socket.socket(fileno=sock_fd)
    try:
        fds = array.array("i")
        msg, ancdata, _, _ = sock.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:fds.itemsize])
        if not fds:
            raise OSError("no file descriptor received on the console socket")
        return fds[0], msg.decode(errors="replace")
    finally:
        sock.detach()


def socketpair():
    import socket

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a.detach(), b.detach()


def relay(master, pid):
    """Copy between our stdio and the pty ``master`` until the process ``pid`` exits.

    Returns the wait status of ``pid``. The local terminal, when there is one, goes into
    raw mode so keys reach the container as typed, and its size is copied to the pty.
    """
    import fcntl
    import select
    import struct
    import termios
    import tty

    from berth.sys import consts as C

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        try:
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            fcntl.ioctl(master, C.TIOCSWINSZ, size)
        except OSError:
            pass
    status = None
    try:
        fds = [master, 0]
        while True:
            try:
                ready, _, _ = select.select(fds, [], [], 0.2)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                else:
                    os.write(master, data)
            if status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    if status is None:
        _, status = os.waitpid(pid, 0)
    return status
