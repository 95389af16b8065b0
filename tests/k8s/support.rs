//! Shared by the `k8s` and `container` tests: renders the kustomize trees the way
//! `kubectl apply -k` does, reads the rendered objects, and speaks just enough HTTP/1.1 to probe
//! the server the way the kubelet does.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::{
    ffi::OsStr,
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use clap::CommandFactory;
use poem_api::config::Config;
use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every kustomize tree under `k8s/`: the base and each overlay.
pub const TREES: [&str; 4] = [
    "base",
    "overlays/minikube",
    "overlays/production",
    "overlays/production-ingress",
];

/// Whether a label selector's `matchLabels` all appear in `labels` (the manifests use no
/// `matchExpressions`; a selector with them panics rather than match wrongly).
pub fn selects(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector["matchExpressions"].is_null(),
        "matchExpressions are not understood here: {selector}"
    );
    selector["matchLabels"]
        .as_object()
        .expect("a selector with matchLabels")
        .iter()
        .all(|(key, value)| &labels[key] == value)
}

/// Renders `k8s/<tree>` with `kubectl kustomize` and returns its objects as JSON values.
///
/// YAML becomes JSON through `kubectl patch --local` with an empty patch: it parses every object
/// and prints it back unchanged, without contacting a cluster, so no YAML crate is needed.
pub fn render(tree: &str) -> Vec<Value> {
    render_dir(&repo_root().join("k8s").join(tree))
}

/// [`render`] for a kustomization anywhere in the repository.
pub fn render_dir(dir: &std::path::Path) -> Vec<Value> {
    let yaml = run(Command::new("kubectl").arg("kustomize").arg(dir), None);
    let json = run(
        Command::new("kubectl").args([
            "patch",
            "--local",
            "--type=merge",
            "-p",
            "{}",
            "-o",
            "json",
            "-f",
            "-",
        ]),
        Some(yaml),
    );
    serde_json::Deserializer::from_str(&json)
        .into_iter::<Value>()
        .map(|object| object.expect("kubectl prints JSON objects"))
        .collect()
}

/// Runs a command to completion and returns its stdout; panics with its stderr if it fails.
pub fn run(command: &mut Command, stdin: Option<String>) -> String {
    let description = format!("{command:?}");
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // Written from a thread: a large input must not deadlock against a full stdout pipe.
        std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    }
    let output = child
        .wait_with_output()
        .expect("the command runs to completion");
    assert!(
        output.status.success(),
        "{description} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the command prints UTF-8")
}

/// The one object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let mut matches = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name);
    let found = matches
        .next()
        .unwrap_or_else(|| panic!("no {kind} named {name} in the rendered objects"));
    assert!(
        matches.next().is_none(),
        "more than one {kind} named {name}"
    );
    found
}

/// The server's container in a Deployment.
pub fn server_container(deployment: &Value) -> &Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("the Deployment has containers")
        .iter()
        .find(|c| c["name"] == "poem-api")
        .expect("the Deployment has a container named poem-api")
}

/// The container's environment as (name, value) pairs. Values from `valueFrom` cannot be known
/// before the pod runs; the manifests use none, and a test should notice if one appears.
pub fn env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let name = e["name"]
                .as_str()
                .expect("env entries have a name")
                .to_owned();
            let value = e["value"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no literal value; the test cannot know it"))
                .to_owned();
            (name, value)
        })
        .collect()
}

/// The container port a probe or Service refers to, by number or by name.
pub fn resolve_port(container: &Value, port: &Value) -> u16 {
    match port {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .expect("a port number"),
        Value::String(name) => container["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == name.as_str()))
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("a port is a number or a name, not {other}"),
    }
}

/// The server's configuration as the pod sees it: the container's `POEM_API_*` variables applied
/// to the server's own parser. Each variable is passed as the flag clap reads it into, so the
/// test does not race other tests by changing its own environment.
pub fn effective_config(container: &Value) -> Config {
    let command = Config::command();
    let mut args = vec!["poem-api".to_owned()];
    for (name, value) in env(container) {
        if !name.starts_with("POEM_API_") {
            continue;
        }
        let flag = command
            .get_arguments()
            .find(|a| a.get_env() == Some(OsStr::new(&name)))
            .and_then(|a| a.get_long())
            .unwrap_or_else(|| panic!("the container sets {name}, which the server does not read"));
        args.push(format!("--{flag}={value}"));
    }
    Config::from_args(&args)
        .unwrap_or_else(|e| panic!("the server rejects the container's environment {args:?}:\n{e}"))
}

/// Seconds as written in a manifest, with Kubernetes' default when the field is absent.
pub fn seconds(value: &Value, default: u64) -> Duration {
    Duration::from_secs(value.as_u64().unwrap_or(default))
}

/// A free port on 127.0.0.1 for a process the test starts. Another process binds it, so the
/// listener cannot be handed over; the port is free again the moment this one is dropped.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An HTTP response, read to the end.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines, lower-cased names, as received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on a fresh connection, closed after the response.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    request(addr, "GET", path, None, true, timeout)
}

/// `GET path` on a fresh connection the client would keep open: the response is read to its
/// end only if the server closes the connection (as it does while draining); otherwise the read
/// times out.
pub fn get_expecting_server_close(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<Response> {
    request(addr, "GET", path, None, false, timeout)
}

/// `POST path` with a JSON body on a fresh connection.
pub fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<Response> {
    request(addr, "POST", path, Some(body), true, timeout)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    close: bool,
    timeout: Duration,
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if close {
        head += "Connection: close\r\n";
    }
    if let Some(body) = body {
        head += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    head += "\r\n";
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.unwrap_or_default().as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// Repeats `GET path` until it answers `want`, as the kubelet repeats a probe; the last outcome
/// is returned on timeout.
pub fn wait_for_status(
    addr: SocketAddr,
    path: &str,
    want: u16,
    every: Duration,
    within: Duration,
) -> Result<Response, String> {
    let deadline = Instant::now() + within;
    loop {
        let outcome = get(addr, path, Duration::from_secs(1));
        match outcome {
            Ok(response) if response.status == want => return Ok(response),
            _ if Instant::now() >= deadline => {
                return Err(format!(
                    "GET {path} on {addr} did not answer {want} within {within:?}: {outcome:?}"
                ));
            }
            _ => std::thread::sleep(every),
        }
    }
}

/// A Kubernetes resource quantity (`250m`, `"1"`, `0.5`, `128Mi`, `1G`) in base units: cores for
/// CPU, bytes for memory. Only the suffixes of the quantity grammar; an exponent form (`1e3`) or
/// a suffix outside it panics, so a test never reads a number it did not understand.
pub fn quantity(value: &Value) -> f64 {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("a quantity is a string or a number, not {other}"),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("not a quantity: {text}"));
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unsupported quantity suffix {other:?} in {text}"),
    };
    number * scale
}

/// The container's `resources.<section>.<resource>` as a quantity; panics if it is not set.
pub fn resource(container: &Value, section: &str, resource: &str) -> f64 {
    let value = &container["resources"][section][resource];
    assert!(
        !value.is_null(),
        "the container has no resources.{section}.{resource}"
    );
    quantity(value)
}

/// The literal value of one of the container's environment variables, if it sets it.
pub fn env_var(container: &Value, name: &str) -> Option<String> {
    env(container)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}
