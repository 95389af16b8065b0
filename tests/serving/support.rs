//! Starting the binary under test and talking to it over raw sockets.
//!
//! The binary is `$POEM_API_TEST_BIN` when set (e.g. an older release, to see these tests fail
//! on it), else the one cargo builds for this test. Every wait has a deadline.

use std::{
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use serde_json::Value;

/// The binary under test.
pub fn binary() -> String {
    std::env::var("POEM_API_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_poem-api").into())
}

/// What happens to the child's stdout after the "ready" event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// A thread reads every line into [`Instance::lines`].
    Drained,
    /// Nobody reads it: the pipe fills up. [`Instance::start_draining`] reads it later.
    Blocked,
}

/// The binary under test, started with `env` (and nothing else) and both ports picked by the OS.
pub struct Instance {
    pub child: Child,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    held: Option<BufReader<ChildStdout>>,
}

impl Instance {
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(env, Stdout::Drained, None)
    }

    /// `open_files`: soft and hard RLIMIT_NOFILE of the child, when set.
    pub fn start_with(env: &[(&str, &str)], stdout: Stdout, open_files: Option<u64>) -> Self {
        let mut command = Command::new(binary());
        command
            .env_clear()
            .envs([
                ("POEM_API_HOST", "127.0.0.1"),
                ("POEM_API_PORT", "0"),
                ("POEM_API_ADMIN_PORT", "0"),
                ("POEM_API_LOG_FORMAT", "json"),
            ])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(n) = open_files {
            // SAFETY: setrlimit is async-signal-safe and only reads the struct passed to it.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().expect("start the binary under test");
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        // Owned from here on, so a failed start still kills the child.
        let mut instance = Self {
            child,
            api: unknown,
            admin: unknown,
            lines: Arc::default(),
            held: None,
        };
        let mut reader = BufReader::new(instance.child.stdout.take().unwrap());
        // The "ready" event carries the bound addresses. Read on a thread so that the deadline
        // holds even if the binary prints nothing.
        let (tx, rx) = mpsc::channel();
        let lines = instance.lines.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                lines.lock().unwrap().push(line.trim_end().to_owned());
                let event: Value = serde_json::from_str(&line).unwrap_or_default();
                if event["message"] == "ready" {
                    let addr = |key: &str| event[key].as_str().unwrap().parse().unwrap();
                    let _ = tx.send(((addr("api"), addr("admin")), reader));
                    return;
                }
            }
        });
        let ((api, admin), reader) = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("a ready event within 15 s");
        (instance.api, instance.admin) = (api, admin);
        instance.held = Some(reader);
        if stdout == Stdout::Drained {
            instance.start_draining();
        }
        instance
    }

    /// Reads stdout from now on (every line into [`Self::lines`]).
    pub fn start_draining(&mut self) {
        let Some(mut reader) = self.held.take() else {
            return;
        };
        let lines = self.lines.clone();
        std::thread::spawn(move || {
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                lines.lock().unwrap().push(text);
            }
        });
    }

    /// Bytes waiting in the stdout pipe (FIONREAD), while nobody reads it.
    pub fn stdout_pipe_bytes(&self) -> usize {
        use std::os::fd::AsRawFd;
        let reader = self.held.as_ref().expect("stdout is held unread");
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int to the pointer given.
        let rc = unsafe { libc::ioctl(reader.get_ref().as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0, "ioctl FIONREAD on the stdout pipe");
        n as usize
    }

    /// Every stdout line read so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every stdout line read so far that is a JSON event.
    pub fn events(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until an event satisfies `pred`, at most `within`.
    pub fn wait_event(&self, within: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(e) = self.events().into_iter().find(&pred) {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill only sends a signal to the child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit; `None` if it has not exited `within`.
    pub fn wait(&mut self, within: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, started.elapsed()));
            }
            if started.elapsed() >= within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// utime + stime of the server so far.
    pub fn cpu(&self) -> Duration {
        cpu_of(self.pid())
    }

    /// The sum of a metric's samples whose labels include every `labels` pair.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let body = get(self.admin, "/metrics", Duration::from_secs(5))
            .ok()?
            .text();
        metric_sum(&body, name, labels)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, from /proc/<pid>/stat.
pub fn cpu_of(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Prometheus text: the sum of `name`'s samples (the name exactly, or with `_total`) whose
/// labels include every pair of `labels`. `None` if there is no such sample.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name && metric != format!("{name}_total") {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            let v: f64 = value.parse().unwrap_or(f64::NAN);
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:.300}", self.text()))
    }

    /// Asserts an RFC 9457 problem with this status, and returns its body.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{:.500}", self.text());
        let ct = self.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("application/problem+json"),
            "content-type {ct:?}, expected application/problem+json: {:.300}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["status"], status, "{body}");
        body
    }
}

/// A TCP connection to `addr`, with read and write timeouts.
pub fn connect(addr: SocketAddr, timeout: Duration) -> TcpStream {
    try_connect(addr, timeout).expect("connect")
}

/// [`connect`], for when a refused connection is a result.
pub fn try_connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// Sends `request` as given on a new connection, reads one response (headers only for HEAD).
pub fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> std::io::Result<Response> {
    let started = Instant::now();
    let mut s = try_connect(addr, timeout)?;
    match s.write_all(request) {
        // The server may answer and close before taking everything: read what it said.
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
        other => other?,
    }
    let head_only = request.starts_with(b"HEAD ");
    let mut conn = Conn::new(s);
    let mut r = conn.read_response(head_only, started + timeout)?;
    r.elapsed = started.elapsed();
    Ok(r)
}

/// `GET path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<Response> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    exchange(addr, req.as_bytes(), timeout)
}

/// A request of `method` with `Connection: close` and an optional JSON body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&[u8]>,
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(body) = json {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    let mut bytes = (req + "\r\n").into_bytes();
    bytes.extend_from_slice(json.unwrap_or_default());
    exchange(addr, &bytes, timeout)
}

/// A client connection that reads responses one after another (keep-alive or pipelined).
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; `Ok(false)` at end of stream.
    fn fill(&mut self, deadline: Instant) -> std::io::Result<bool> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(ErrorKind::TimedOut.into()),
            Err(e) => Err(e),
        }
    }

    /// Reads one response: by Content-Length, chunked, or to the end of the stream.
    pub fn read_response(
        &mut self,
        head_only: bool,
        deadline: Instant,
    ) -> std::io::Result<Response> {
        let (status, headers, head_len) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 128];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let headers = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            let v = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_ascii_lowercase(), v)
                        })
                        .collect::<Vec<_>>();
                    break (parsed.code.unwrap(), headers, len);
                }
                Ok(httparse::Status::Partial) => {
                    if !self.fill(deadline)? {
                        return Err(std::io::Error::new(
                            ErrorKind::UnexpectedEof,
                            format!(
                                "closed before a complete response head: {:?}",
                                String::from_utf8_lossy(&self.buf)
                            ),
                        ));
                    }
                }
                Err(e) => {
                    return Err(std::io::Error::new(ErrorKind::InvalidData, e.to_string()));
                }
            }
        };
        self.buf.drain(..head_len);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
            // No body by the framing rules.
        } else if let Some(len) = find("content-length") {
            let len: usize = len.trim().parse().map_err(|_| ErrorKind::InvalidData)?;
            while self.buf.len() < len {
                if !self.fill(deadline)? {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
            }
            body = self.buf.drain(..len).collect();
        } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                    if !self.fill(deadline)? {
                        return Err(ErrorKind::UnexpectedEof.into());
                    }
                    continue;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..eol]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| ErrorKind::InvalidData)?;
                while self.buf.len() < eol + 2 + size + 2 {
                    if !self.fill(deadline)? {
                        return Err(ErrorKind::UnexpectedEof.into());
                    }
                }
                body.extend_from_slice(&self.buf[eol + 2..eol + 2 + size]);
                self.buf.drain(..eol + 2 + size + 2);
                if size == 0 {
                    break; // No trailers are sent by this server.
                }
            }
        } else {
            while self.fill(deadline)? {}
            body = std::mem::take(&mut self.buf);
        }
        Ok(Response {
            status,
            headers,
            body,
            elapsed: Duration::ZERO,
        })
    }

    /// Bytes that arrive until the server closes, failing at the deadline.
    pub fn read_to_close(&mut self, deadline: Instant) -> std::io::Result<Vec<u8>> {
        loop {
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return Ok(std::mem::take(&mut self.buf)),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Ok(std::mem::take(&mut self.buf));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// How long until the server closes `stream` (end of stream or reset), reading and discarding
/// what it sends; `None` if it is still open at `within`.
pub fn time_to_close(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 65536];
    loop {
        let left = within.saturating_sub(started.elapsed());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(started.elapsed()), // reset
        }
    }
}

/// True when this process may use pidfd_getfd on another process (root, as in CI).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The fd number, in process `pid`, of the socket listening on 127.0.0.1:`port`: the socket
/// inode of a LISTEN entry in /proc/<pid>/net/tcp matched against /proc/<pid>/fd/*.
pub fn listening_fd(pid: i32, port: u16) -> i32 {
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let inode = tcp
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f[1].rsplit_once(':')?.1, 16).ok()?;
            (local_port == port && f[3] == "0A").then(|| f[9].to_owned())
        })
        .unwrap_or_else(|| panic!("no LISTEN entry for port {port}"));
    let want = format!("socket:[{inode}]");
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        if std::fs::read_link(entry.path()).is_ok_and(|t| t == Path::new(&want)) {
            return entry.file_name().to_str().unwrap().parse().unwrap();
        }
    }
    panic!("no fd of process {pid} is {want}");
}

/// Shuts down (SHUT_RD) the listening socket `fd` of process `pid` from outside, through a
/// duplicate taken with pidfd_getfd(2): the process's accept(2) then fails with EINVAL.
pub fn shut_down_listener(pid: i32, fd: i32) {
    // SAFETY: raw syscalls with integer arguments; every fd opened here is closed here.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        let err = std::io::Error::last_os_error();
        libc::close(pidfd);
        assert!(dup >= 0, "pidfd_getfd (needs root or ptrace rights): {err}");
        let rc = libc::shutdown(dup, libc::SHUT_RD);
        let err = std::io::Error::last_os_error();
        libc::close(dup);
        assert_eq!(rc, 0, "shutdown(SHUT_RD) of the listening socket: {err}");
    }
}
