//! Child-process helpers: readiness lines, SIGTERM then SIGKILL, ports, binaries.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mesh_testkit::process::{cargo_bin, free_port, wait_for_line, wait_for_port, ChildGuard};

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

#[test]
fn readiness_line_and_graceful_terminate() {
    let mut child =
        ChildGuard::spawn(&mut sh("echo starting; echo LISTENING 4242; exec sleep 30")).expect("spawn");
    assert_eq!(child.listening_port(Duration::from_secs(5)).expect("port"), 4242);
    let t = Instant::now();
    let done = child.terminate().expect("terminate");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(!done.killed, "sleep dies of SIGTERM");
    assert!(!done.status.success());
    assert_eq!(done.stdout, "starting\nLISTENING 4242\n");
    assert!(child.terminate().is_err(), "only once");
}

#[test]
fn sigkill_after_the_grace_period() {
    let mut child = ChildGuard::spawn(&mut sh("trap '' TERM; echo READY; exec sleep 30"))
        .expect("spawn")
        .with_grace(Duration::from_millis(200));
    child
        .wait_for_line("READY", Duration::from_secs(5))
        .expect("ready");
    let t = Instant::now();
    let done = child.terminate().expect("terminate");
    assert!(done.killed);
    assert!(t.elapsed() >= Duration::from_millis(200) && t.elapsed() < Duration::from_secs(3));
}

#[test]
fn drop_terminates_the_child() {
    let child = ChildGuard::spawn(&mut sh("exec sleep 30")).expect("spawn");
    let pid = child.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(child);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "killed and reaped");
}

#[test]
fn wait_for_line_times_out_and_sees_eof() {
    let mut child = ChildGuard::spawn(&mut sh("echo nothing; exec sleep 30")).expect("spawn");
    let t = Instant::now();
    let e = child
        .wait_for_line("LISTENING ", Duration::from_millis(200))
        .expect_err("no such line");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(child);
    let mut child = ChildGuard::spawn(&mut sh("echo bye")).expect("spawn");
    let e = child
        .wait_for_line("LISTENING ", Duration::from_secs(5))
        .expect_err("exits first");
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn wait_for_line_on_any_reader() {
    let mut child = sh("echo a; echo 'LISTENING 99 '; echo b")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().expect("stdout");
    assert_eq!(
        wait_for_line(out, "LISTENING ", Duration::from_secs(5)).expect("line"),
        "99"
    );
    child.wait().expect("wait");
}

#[test]
fn ports() {
    let port = free_port().expect("free port");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let _l = TcpListener::bind(addr).expect("bind the free port");
    wait_for_port(addr, Duration::from_secs(2)).expect("listening");
}

#[test]
fn wait_for_port_times_out_on_a_port_that_refuses() {
    // Bound but not listening: connections are refused, and no other process (nor a connect to itself from
    // the same ephemeral port) can take the port while the socket is held. A port that is only "free"
    // could be taken by anything between the check and the connect (CI saw exactly that once).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let addr = socket.local_addr().expect("addr").as_socket().expect("inet");
    let t = Instant::now();
    let err = wait_for_port(addr, Duration::from_millis(200)).expect_err("nothing listens");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn finds_workspace_binaries() {
    let path = cargo_bin("provider-sim").expect("provider-sim built before the tests");
    assert!(path.is_file());
    assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("provider-sim"));
    assert!(cargo_bin("no-such-binary").is_err());
}
