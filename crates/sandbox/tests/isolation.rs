//! What a payload can see and reach: processes, files, network, identity, environment.
//! Every test runs a real sandbox (root required).

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use ember_sandbox::Sandbox;

#[test]
fn hostname_is_the_sandboxes_own() {
    let mut spec = spec(
        "hostname",
        &["/bin/cat", "/proc/sys/kernel/hostname", "/etc/hostname"],
    );
    spec.hostname = "fn-box".into();
    let (status, output) = run(spec);
    assert!(status.success(), "{output}");
    assert_eq!(output, "fn-box\nfn-box\n");
    let host = nix::unistd::gethostname().unwrap();
    assert_ne!(host.to_str(), Some("fn-box"));
}

#[test]
fn payload_is_pid_2_child_of_pid_1_and_sees_only_its_processes() {
    let output = run_python_ok(
        "pids",
        "import os\n\
         print(os.getpid(), os.getppid())\n\
         print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))",
    );
    assert_eq!(
        output, "2 1\n[2]\n",
        "pid 1 (another uid) is hidden by hidepid=2"
    );

    let (status, output) = run(spec("ps", &["/bin/sh", "-c", "ps -e -o pid=,comm="]));
    assert!(status.success(), "{output}");
    let processes: Vec<(u32, String)> = output
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace();
            (
                it.next().unwrap().parse().unwrap(),
                it.next().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        processes,
        [(2, "sh".to_owned()), (3, "ps".to_owned())],
        "{output}"
    );
}

#[test]
fn host_files_are_invisible_and_the_root_is_minimal() {
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("host-secret");
    std::fs::write(&marker, "secret").unwrap();
    let script = format!(
        "import os\n\
         for p in [{marker:?}, {dir:?}, '/root', '/home', '/work', '/var/lib', '/etc/shadow', '/sys', '/boot']:\n\
         \x20   print(p, os.path.exists(p))\n\
         print(sorted(os.listdir('/')))\n\
         print(sorted(os.listdir('/etc')))\n\
         print(sorted(os.listdir('/dev')))\n\
         print(sorted(os.listdir('/tmp')))\n\
         for p in ['/proc/kcore', '/proc/keys', '/proc/timer_list']:\n\
         \x20   print(p, 'masked' if not os.path.exists(p) or open(p, 'rb').read(16) == b'' else 'READABLE')",
        marker = marker.to_str().unwrap(),
        dir = outside.path().to_str().unwrap(),
    );
    let output = run_python_ok("invisible", &script);
    let mut lines = output.lines();
    for _ in 0..9 {
        let line = lines.next().unwrap();
        assert!(line.ends_with(" False"), "visible in the sandbox: {line}");
    }
    assert_eq!(
        lines.next().unwrap(),
        "['bin', 'dev', 'etc', 'lib', 'lib64', 'proc', 'sbin', 'tmp', 'usr', 'var']"
    );
    assert_eq!(
        lines.next().unwrap(),
        "['alternatives', 'group', 'hostname', 'hosts', 'ld.so.cache', 'nsswitch.conf', 'passwd', 'ssl']"
    );
    assert_eq!(
        lines.next().unwrap(),
        "['fd', 'full', 'null', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']"
    );
    assert_eq!(lines.next().unwrap(), "[]", "a fresh /tmp");
    for line in lines {
        assert!(
            line.ends_with(" masked"),
            "kernel information readable: {line}"
        );
    }
}

#[test]
fn code_is_read_only_and_so_is_everything_but_tmp() {
    let code = tempfile::tempdir().unwrap();
    std::fs::set_permissions(code.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        code.path().join("handler.py"),
        "def handler(e, c): return 42\n",
    )
    .unwrap();
    let mut spec = python(
        "readonly",
        "import errno, os\n\
         print(open('/var/task/handler.py').read().strip())\n\
         for path in ['/var/task/new.py', '/var/task/handler.py', '/new', '/etc/passwd', '/usr/evil', '/proc/sys/kernel/hostname', '/dev/evil']:\n\
         \x20   try:\n\
         \x20       open(path, 'w').write('x')\n\
         \x20       print(path, 'WRITABLE')\n\
         \x20   except OSError as e:\n\
         \x20       print(path, errno.errorcode[e.errno])\n\
         open('/tmp/ok', 'w').write('fine')\n\
         open('/dev/shm/ok', 'w').write('fine')\n\
         open('/dev/null', 'w').write('fine')\n\
         print(os.getcwd())",
    );
    spec.code_dir = Some(code.path().to_path_buf());
    spec.cwd = "/var/task".into();
    let output = {
        let (status, output) = run(spec);
        assert!(status.success(), "{output}");
        output
    };
    let expected = "def handler(e, c): return 42\n\
        /var/task/new.py EROFS\n\
        /var/task/handler.py EROFS\n\
        /new EROFS\n\
        /etc/passwd EROFS\n\
        /usr/evil EROFS\n\
        /proc/sys/kernel/hostname EROFS\n\
        /dev/evil EROFS\n\
        /var/task\n";
    assert_eq!(output, expected);
    assert_eq!(
        std::fs::read_dir(code.path()).unwrap().count(),
        1,
        "nothing was written to the host's code directory"
    );
}

#[test]
fn the_payload_is_an_unprivileged_user_without_capabilities() {
    let output = run_python_ok(
        "identity",
        "import os\n\
         print(os.getuid(), os.getgid(), os.getgroups())\n\
         status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n\
         for key in ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp']:\n\
         \x20   print(key, status[key].strip())\n\
         import pwd\n\
         print(pwd.getpwuid(os.getuid()).pw_name)",
    );
    assert_eq!(
        output,
        "993 990 []\n\
         CapInh 0000000000000000\n\
         CapPrm 0000000000000000\n\
         CapEff 0000000000000000\n\
         CapBnd 0000000000000000\n\
         CapAmb 0000000000000000\n\
         NoNewPrivs 1\n\
         Seccomp 2\n\
         sbx_user1051\n"
    );
}

#[test]
fn no_sandbox_process_is_privileged_on_the_host() {
    let sandbox = Sandbox::spawn(spec("hostview", &["/bin/sleep", "100"]), env()).unwrap();
    let status = |pid: u32, key: &str| -> String {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{key}:"))
                    .map(|v| v.trim().to_owned())
            })
            .unwrap()
    };
    let base = ember_sandbox::DEFAULT_UID_BASE;
    // Pid 1 of the sandbox: the sandbox's root, an unprivileged host uid.
    let init_uid: u32 = status(sandbox.pid(), "Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(init_uid >= base, "pid 1 runs as host uid {init_uid}");
    // Pid 1 drops its capabilities right after reporting the payload started, which can
    // be a moment after `spawn` returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while status(sandbox.pid(), "CapEff") != "0000000000000000"
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(status(sandbox.pid(), "CapEff"), "0000000000000000");
    // The helper stays root on the host but holds no capability at all.
    assert_eq!(status(sandbox.helper_pid(), "CapEff"), "0000000000000000");
    assert_eq!(status(sandbox.helper_pid(), "CapBnd"), "0000000000000000");
    // The payload: the next host uid.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", sandbox.pid())).unwrap();
    let payload: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let payload_uid: u32 = status(payload, "Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(payload_uid, init_uid + 1);
    assert!(sandbox.is_alive());
    sandbox.destroy().unwrap();
}

#[test]
fn the_environment_is_exactly_the_specs() {
    let mut spec = spec("env", &["/usr/bin/env"]);
    spec.env = vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("AWS_LAMBDA_RUNTIME_API".into(), "127.0.0.1:9001".into()),
        ("EMPTY".into(), String::new()),
    ];
    assert!(
        std::env::vars().count() > 3,
        "the test process has variables that could leak"
    );
    let (status, output) = run(spec);
    assert!(status.success(), "{output}");
    assert_eq!(
        output,
        "PATH=/usr/bin:/bin\nAWS_LAMBDA_RUNTIME_API=127.0.0.1:9001\nEMPTY=\n"
    );
}

#[test]
fn the_network_is_loopback_only_and_the_hosts_loopback_is_unreachable() {
    let host_service = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_service.local_addr().unwrap().port();
    let script = format!(
        "import socket, errno\n\
         print(socket.if_nameindex())\n\
         s = socket.socket()\n\
         try:\n\
         \x20   s.connect(('127.0.0.1', {port}))\n\
         \x20   print('CONNECTED')\n\
         except OSError as e:\n\
         \x20   print(errno.errorcode[e.errno])\n\
         print(open('/proc/net/route').read().count('\\n'))"
    );
    let output = run_python_ok("net", &script);
    assert_eq!(
        output, "[(1, 'lo')]\nECONNREFUSED\n1\n",
        "only the header line of an empty routing table"
    );
    host_service.set_nonblocking(true).unwrap();
    assert!(
        host_service.accept().is_err(),
        "nothing reached the host's listener"
    );
}

#[test]
fn the_runtime_api_listener_reaches_the_host_and_not_the_payload() {
    let mut sandbox = Sandbox::spawn(
        python(
            "runtime-api",
            "import os, socket\n\
             fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n\
             s = socket.create_connection(('127.0.0.1', 9001))\n\
             s.sendall(('hello from the sandbox, fds %s' % fds[:3]).encode())\n\
             print(s.recv(100).decode())",
        ),
        env(),
    )
    .unwrap();
    let listener = sandbox.runtime_api_listener().expect("listener");
    assert!(sandbox.runtime_api_listener().is_none(), "taken once");
    assert_eq!(listener.local_addr().unwrap().to_string(), "127.0.0.1:9001");
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut stream, peer) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("no connection from the sandbox: {e}"),
        }
    };
    assert!(peer.ip().is_loopback());
    stream.set_nonblocking(false).unwrap();
    let mut received = vec![0; 100];
    let n = stream.read(&mut received).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&received[..n]),
        "hello from the sandbox, fds [0, 1, 2]",
        "fd 3 is the listing's own; no listener leaked into the payload"
    );
    std::io::Write::write_all(&mut stream, b"hello from the host").unwrap();
    let (status, output) = finish(&mut sandbox);
    assert!(status.success(), "{output}");
    assert_eq!(output, "hello from the host\n");
    sandbox.destroy().unwrap();
}

#[test]
fn forbidden_syscalls_fail_with_eperm() {
    let output = run_python_ok(
        "seccomp",
        "import ctypes, errno, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         def call(f, *args):\n\
         \x20   r = f(*args)\n\
         \x20   if r == 0 and f is libc.syscall: os._exit(0)  # a clone that succeeded: child leaves\n\
         \x20   return errno.errorcode.get(ctypes.get_errno(), 'OK') if r != 0 else 'OK'\n\
         fd = os.open('/proc/self/ns/net', os.O_RDONLY)\n\
         checks = [\n\
         \x20   ('mount', libc.mount, b'none', b'/tmp', b'tmpfs', 0, None),\n\
         \x20   ('umount2', libc.umount2, b'/proc', 2),\n\
         \x20   ('unshare(NEWUSER)', libc.unshare, 0x10000000),\n\
         \x20   ('unshare(NEWNS)', libc.unshare, 0x00020000),\n\
         \x20   ('setns', libc.setns, fd, 0),\n\
         \x20   ('ptrace', libc.ptrace, 0, 0, None, None),\n\
         \x20   ('chroot', libc.chroot, b'/tmp'),\n\
         \x20   ('pivot_root', libc.syscall, 155, b'/tmp', b'/tmp'),\n\
         \x20   ('clone(NEWNET)', libc.syscall, 56, 0x40000000 | 17, 0, 0, 0, 0),\n\
         \x20   ('clone(NEWUSER)', libc.syscall, 56, 0x10000000 | 17, 0, 0, 0, 0),\n\
         \x20   ('clone3', libc.syscall, 435, None, 88),\n\
         \x20   ('bpf', libc.syscall, 321, 0, None, 0),\n\
         \x20   ('perf_event_open', libc.syscall, 298, None, 0, -1, -1, 0),\n\
         \x20   ('keyctl', libc.syscall, 250, 0, 0, 0, 0, 0),\n\
         \x20   ('process_vm_readv', libc.syscall, 310, 1, None, 0, None, 0, 0),\n\
         \x20   ('io_uring_setup', libc.syscall, 425, 1, None),\n\
         \x20   ('vsock', libc.socket, 40, 1, 0),\n\
         ]\n\
         for name, f, *args in checks:\n\
         \x20   print(name, call(f, *args))\n\
         try:\n\
         \x20   os.mknod('/tmp/null', 0o020666, os.makedev(1, 3))\n\
         \x20   print('mknod(char) OK')\n\
         except OSError as e:\n\
         \x20   print('mknod(char)', errno.errorcode[e.errno])\n\
         os.mkfifo('/tmp/fifo')\n\
         print('mkfifo OK')\n\
         pid = os.fork()\n\
         if pid == 0: os._exit(3)\n\
         print('fork', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))",
    );
    let expected = "mount EPERM\n\
        umount2 EPERM\n\
        unshare(NEWUSER) EPERM\n\
        unshare(NEWNS) EPERM\n\
        setns EPERM\n\
        ptrace EPERM\n\
        chroot EPERM\n\
        pivot_root EPERM\n\
        clone(NEWNET) EPERM\n\
        clone(NEWUSER) EPERM\n\
        clone3 ENOSYS\n\
        bpf EPERM\n\
        perf_event_open EPERM\n\
        keyctl EPERM\n\
        process_vm_readv EPERM\n\
        io_uring_setup EPERM\n\
        vsock EPERM\n\
        mknod(char) EPERM\n\
        mkfifo OK\n\
        fork 3\n";
    assert_eq!(output, expected);
}

#[test]
fn stdin_is_empty_and_stdout_and_stderr_share_the_log_pipe() {
    let (status, output) = run(spec(
        "stdio",
        &["/bin/sh", "-c", "cat; echo out; echo err >&2; exit 7"],
    ));
    assert_eq!(
        status.code(),
        Some(7),
        "the payload's exit code comes through"
    );
    assert_eq!(output, "out\nerr\n");
}
