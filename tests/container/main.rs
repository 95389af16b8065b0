//! Container contract: a static binary packaged as `container/contract.json` describes (the same
//! file `nix/image.nix` reads), run by `podman kube play` from the rendered minikube overlay — its
//! securityContext, env, resources and ports — answers through its published port, and stops
//! gracefully: a request in flight when the pod is taken down completes with 200, and the
//! process exits 0.
//!
//! Needs podman, runc and kubectl; `.ci/container.sh` installs podman and runc, builds the static binary
//! and runs `cargo test --test container -- --ignored`.

#[path = "../k8s/support.rs"]
mod support;

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{Response, effective_config, resolve_port, run, server_container};

/// The image this test builds; a tag of its own, so a developer's images are never replaced.
const IMAGE: &str = "localhost/poem-api:contract-test";

/// The kubelet's probes, performed from the host (see `adapt_for_podman` for why podman cannot).
const PROBES: [&str; 3] = ["startupProbe", "readinessProbe", "livenessProbe"];

#[test]
#[ignore = "needs podman"]
fn the_image_runs_under_the_minikube_manifests_and_finishes_in_flight_requests_when_taken_down() {
    // Arrange: the image, and the overlay as podman can play it.
    let contract = Contract::read();
    let image = Image::build(&contract, &static_binary());
    let mut objects = support::render("overlays/minikube");
    let published = adapt_for_podman(&mut objects, &image.0);
    let deployment = support::find(&objects, "Deployment", "poem-api").clone();
    let rendered = support::render("overlays/minikube");
    let container = server_container(support::find(&rendered, "Deployment", "poem-api"));
    let config = effective_config(container);
    let grace = support::seconds(
        &deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        30,
    );
    let pod = Pod::play(&objects);

    // Act and assert: it becomes ready the way the kubelet would see it.
    for kind in PROBES {
        let probe = &container[kind];
        let port = resolve_port(container, &probe["httpGet"]["port"]);
        let path = probe["httpGet"]["path"].as_str().expect("an httpGet path");
        let period = support::seconds(&probe["periodSeconds"], 10);
        let patience = period * probe["failureThreshold"].as_u64().unwrap_or(3) as u32;
        support::wait_for_status(
            published.host_addr(port),
            path,
            200,
            Duration::from_millis(100),
            patience.max(Duration::from_secs(10)),
        )
        .unwrap_or_else(|e| panic!("{kind} never succeeded: {e}\n{}", pod.logs()));
    }

    // It runs with the manifests' security settings, as the kernel reports them.
    let status = pod.process_status();
    assert!(
        status.contains(&format!("Uid:\t{0}\t{0}\t{0}\t{0}", contract.uid)),
        "{status}"
    );
    assert!(
        status.contains(&format!("Gid:\t{0}\t{0}\t{0}\t{0}", contract.gid)),
        "{status}"
    );
    assert!(
        status.contains("CapEff:\t0000000000000000"),
        "capabilities left: {status}"
    );
    assert!(
        status.contains("NoNewPrivs:\t1"),
        "privilege escalation possible: {status}"
    );
    assert!(
        status.contains("Seccomp:\t2"),
        "no seccomp filter: {status}"
    );
    assert_eq!(
        pod.inspect("{{.HostConfig.ReadonlyRootfs}}"),
        "true",
        "the root filesystem is writable"
    );

    // The API answers through the published port.
    let api = published.host_addr(config.port);
    let info = expect_status(support::get(api, "/", Duration::from_secs(5)), 200, &pod);
    let info: Value = serde_json::from_str(&info.body).expect("GET / answers JSON");
    assert_eq!(info["name"], "poem-api", "{info}");
    let echo = support::post_json(
        api,
        "/api/v1/echo",
        r#"{"message":"hello","count":2}"#,
        Duration::from_secs(5),
    );
    let echo: Value =
        serde_json::from_str(&expect_status(echo, 200, &pod).body).expect("echo answers JSON");
    assert_eq!(
        (echo["message"].as_str(), echo["count"].as_u64()),
        (Some("hello"), Some(2)),
        "{echo}"
    );
    let invalid = support::post_json(
        api,
        "/api/v1/echo",
        r#"{"message":""}"#,
        Duration::from_secs(5),
    );
    let invalid = expect_status(invalid, 422, &pod);
    assert_eq!(
        invalid.header("content-type"),
        Some("application/problem+json"),
        "{invalid:?}"
    );
    expect_status(
        support::get(api, "/api/v1/status/418", Duration::from_secs(5)),
        418,
        &pod,
    );

    // Act: a slow request is in flight when the pod is taken down. It lasts past the drain delay,
    // so it is still running after the listener closes.
    let delay = config.drain_delay + Duration::from_secs(3);
    assert!(
        delay < config.max_delay && delay < config.shutdown_timeout,
        "the slow request must be allowed to finish"
    );
    let (sent, sent_rx) = mpsc::channel();
    let slow = thread::spawn(move || {
        let started = Instant::now();
        let _ = sent.send(());
        let outcome = support::get(
            api,
            &format!("/api/v1/delay/{}", delay.as_millis()),
            delay + Duration::from_secs(10),
        );
        (outcome, started.elapsed())
    });
    sent_rx.recv().expect("the slow request starts");
    thread::sleep(Duration::from_millis(500));
    let stop = pod.take_down(grace);

    // Assert: while draining, readiness fails at once but the API keeps serving.
    let admin = published.host_addr(config.admin_port);
    support::wait_for_status(
        admin,
        "/readyz",
        503,
        Duration::from_millis(50),
        Duration::from_secs(3),
    )
    .unwrap_or_else(|e| panic!("readiness did not fail after SIGTERM: {e}\n{}", pod.logs()));
    // A keep-alive client is told to reconnect (to another instance) and the connection closes.
    let during_drain = expect_status(
        support::get_expecting_server_close(api, "/", Duration::from_secs(3)),
        200,
        &pod,
    );
    assert_eq!(
        during_drain.header("connection"),
        Some("close"),
        "a draining server asks clients to reconnect elsewhere"
    );

    // The slow request completes, the process exits 0, and `podman kube down` removes the pod.
    let (outcome, took) = slow.join().expect("the slow request thread");
    let exit = stop.join().expect("the pod stops");
    let finished = expect_status(outcome, 200, &pod);
    assert!(
        took >= delay,
        "the delay endpoint answered after {took:?}, before its {delay:?}"
    );
    let body: Value =
        serde_json::from_str(&finished.body).expect("the delay endpoint answers JSON");
    assert_eq!(
        body["delay_ms"].as_u64(),
        Some(delay.as_millis() as u64),
        "{body}"
    );
    assert_eq!(
        exit,
        "0",
        "the server did not exit 0 after a graceful stop\n{}",
        pod.logs()
    );
    pod.down();
}

/// What podman cannot take as a cluster would is changed here, in code, on the rendered objects;
/// there is no second copy of the YAML. Everything else — securityContext, env, resources,
/// command and args — reaches podman exactly as rendered. Returns where the ports are published.
fn adapt_for_podman(objects: &mut [Value], image: &str) -> Published {
    let deployment = objects
        .iter_mut()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "poem-api")
        .expect("the overlay has the Deployment");
    // podman creates one pod per replica, and those would compete for the same host ports. The
    // HPA owns the count, so the manifest leaves `replicas` out and podman creates one pod.
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "the minikube overlay leaves the replica count to the HPA: {}",
        deployment["spec"]["replicas"]
    );
    let container = deployment["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c["name"] == "poem-api"))
        .expect("the Deployment has the poem-api container");

    // 1. The image. The overlay names the image `nix build .#image` makes, by its tag; this
    //    machine cannot run Nix builds, so the image built here from the same contract file
    //    stands in for it. imagePullPolicy stays IfNotPresent: the image is present.
    container["image"] = json!(image);

    // 2. Published ports. In a cluster traffic arrives through the Service; podman publishes a
    //    container port only if it has a hostPort. Each port gets a free one, on loopback only.
    let mut published = Published(Vec::new());
    for port in container["ports"]
        .as_array_mut()
        .expect("the container declares ports")
    {
        let host_port = support::free_port();
        published.0.push((
            port["containerPort"].as_u64().expect("a port number") as u16,
            host_port,
        ));
        port["hostIP"] = json!("127.0.0.1");
        port["hostPort"] = json!(host_port);
    }

    // 3. Probes. podman turns a livenessProbe (and, in later releases, a startupProbe) into a
    //    healthcheck that runs `curl` through `/bin/sh` inside the container; the image has
    //    neither, by design, so the healthcheck could only fail, and podman then restarts the
    //    container. readinessProbe it ignores. The test performs all three from the host
    //    instead, with the overlay's paths and ports (see PROBES).
    let container = container.as_object_mut().expect("a container is an object");
    for kind in PROBES {
        container.remove(kind);
    }
    published
}

/// Container ports and the host ports they are published on.
struct Published(Vec<(u16, u16)>);

impl Published {
    fn host_addr(&self, container_port: u16) -> SocketAddr {
        let (_, host) = self
            .0
            .iter()
            .find(|(c, _)| *c == container_port)
            .expect("the port is published");
        SocketAddr::from(([127, 0, 0, 1], *host))
    }
}

fn expect_status(outcome: std::io::Result<Response>, status: u16, pod: &Pod) -> Response {
    match outcome {
        Ok(response) if response.status == status => response,
        other => panic!("expected {status}, got {other:?}\n{}", pod.logs()),
    }
}

/// The runtime contract shared with `nix/image.nix`.
struct Contract {
    entrypoint: Vec<String>,
    uid: String,
    gid: String,
    user: String,
    env: Vec<(String, String)>,
    ports: Vec<u16>,
}

impl Contract {
    fn read() -> Self {
        let path = support::repo_root().join("container/contract.json");
        let raw: Value =
            serde_json::from_str(&fs::read_to_string(&path).expect("container/contract.json"))
                .expect("JSON");
        let user = raw["user"].as_str().expect("user").to_owned();
        let (uid, gid) = user.split_once(':').expect("user is uid:gid");
        Contract {
            entrypoint: raw["entrypoint"]
                .as_array()
                .expect("entrypoint")
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect(),
            uid: uid.to_owned(),
            gid: gid.to_owned(),
            env: raw["env"]
                .as_object()
                .expect("env")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            ports: raw["ports"]
                .as_object()
                .expect("ports")
                .values()
                .map(|p| p.as_u64().unwrap() as u16)
                .collect(),
            user,
        }
    }

    /// A Containerfile for a `FROM scratch` image: the binary at the entrypoint's path and
    /// nothing else, run as the contract's numeric user.
    fn containerfile(&self) -> String {
        let binary = &self.entrypoint[0];
        let mut file = format!("FROM scratch\nCOPY poem-api {binary}\nUSER {}\n", self.user);
        for (name, value) in &self.env {
            file += &format!("ENV {name}={value}\n");
        }
        for port in &self.ports {
            file += &format!("EXPOSE {port}/tcp\n");
        }
        file += &format!(
            "ENTRYPOINT {}\n",
            serde_json::to_string(&self.entrypoint).unwrap()
        );
        file
    }
}

/// The statically linked binary the image holds: `POEM_API_STATIC_BIN`, or the release build for
/// the explicit gnu target (built here if missing). A scratch image has no libc to load.
fn static_binary() -> PathBuf {
    let path = match std::env::var_os("POEM_API_STATIC_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let path =
                support::repo_root().join("target/x86_64-unknown-linux-gnu/release/poem-api");
            if !path.exists() {
                run(
                    Command::new(env!("CARGO"))
                        .args([
                            "build",
                            "--release",
                            "--locked",
                            "--target",
                            "x86_64-unknown-linux-gnu",
                        ])
                        .env("RUSTFLAGS", "-C target-feature=+crt-static")
                        .current_dir(support::repo_root()),
                    None,
                );
            }
            path
        }
    };
    let elf = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        !has_interpreter(&elf),
        "{} is dynamically linked; build it with \
         RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --target x86_64-unknown-linux-gnu",
        path.display()
    );
    path
}

/// Whether a 64-bit little-endian ELF file asks for a dynamic loader (a PT_INTERP header).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(
        elf.get(..5),
        Some(&b"\x7fELF\x02"[..]),
        "not a 64-bit ELF file"
    );
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let table = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (entry_size, entries) = (u16_at(0x36), u16_at(0x38));
    (0..entries).any(|i| {
        let at = table + i * entry_size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3 // PT_INTERP
    })
}

/// `podman`, with this repository's containers.conf (see the comments in that file).
fn podman() -> Command {
    let mut command = Command::new("podman");
    command.env(
        "CONTAINERS_CONF",
        support::repo_root().join("container/containers.conf"),
    );
    command
}

/// The image, removed again when the test ends.
struct Image(String);

impl Image {
    fn build(contract: &Contract, binary: &Path) -> Self {
        let context = std::env::temp_dir().join(format!("poem-api-image-{}", std::process::id()));
        fs::create_dir_all(&context).unwrap();
        fs::copy(binary, context.join("poem-api")).unwrap();
        fs::write(context.join("Containerfile"), contract.containerfile()).unwrap();
        run(
            podman()
                .args(["build", "--quiet", "--tag", IMAGE, "--file"])
                .arg(context.join("Containerfile"))
                .arg(&context),
            None,
        );
        fs::remove_dir_all(&context).unwrap();
        Image(IMAGE.to_owned())
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "--force", &self.0]).output();
    }
}

/// The pod `podman kube play` made from the adapted objects; taken down when the test ends.
struct Pod {
    manifest: PathBuf,
    pod: String,
    container: String,
    down: bool,
}

impl Pod {
    fn play(objects: &[Value]) -> Self {
        // JSON is YAML: the adapted objects go to podman as a multi-document stream.
        let stream: Vec<String> = objects
            .iter()
            .map(|o| serde_json::to_string_pretty(o).unwrap())
            .collect();
        let manifest =
            std::env::temp_dir().join(format!("poem-api-kube-{}.yaml", std::process::id()));
        fs::write(&manifest, stream.join("\n---\n")).unwrap();
        // --replace: a pod left behind by an interrupted run is removed first.
        let output = run(
            podman().args(["kube", "play", "--replace"]).arg(&manifest),
            None,
        );
        // podman prints "Pod:\n<id>\nContainer:\n<id>"; its naming scheme differs between releases.
        let after = |heading: &str| {
            let mut lines = output.lines().skip_while(|l| l.trim() != heading);
            lines
                .nth(1)
                .unwrap_or_else(|| panic!("no {heading} in podman's output:\n{output}"))
                .trim()
                .to_owned()
        };
        Pod {
            pod: after("Pod:"),
            container: after("Container:"),
            manifest,
            down: false,
        }
    }

    fn inspect(&self, format: &str) -> String {
        run(
            podman().args(["inspect", "--format", format, &self.container]),
            None,
        )
        .trim()
        .to_owned()
    }

    /// The container's main process as the kernel sees it (`/proc/<pid>/status` on the host).
    fn process_status(&self) -> String {
        let pid = self.inspect("{{.State.Pid}}");
        fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("the container's process is running")
    }

    fn logs(&self) -> String {
        let output = podman().args(["logs", &self.container]).output();
        output
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// Stops the server as the kubelet does — SIGTERM, then SIGKILL only after the grace period,
    /// with the pod's network kept until the container has exited — and returns its exit code.
    /// `podman kube down` follows (see `down`) and removes what is left.
    ///
    /// Two podman 4.3 (Debian 12) behaviours rule out stopping through the pod:
    /// - `podman kube down` stops the pod with a zero timeout: SIGKILL at once, no SIGTERM
    ///   (podman issues #19135, #21767, #22397; fixed by PR #22398 in later releases);
    /// - `podman pod stop` stops the infra container in parallel with the others, and with it go
    ///   the published ports: a response written during the drain never reaches the client.
    ///
    /// So the server's container is stopped on its own first; `--time` is what newer podman
    /// derives from terminationGracePeriodSeconds.
    fn take_down(&self, grace: Duration) -> thread::JoinHandle<String> {
        let container = self.container.clone();
        thread::spawn(move || {
            let grace = grace.as_secs().to_string();
            run(podman().args(["stop", "--time", &grace, &container]), None);
            run(
                podman().args(["inspect", "--format", "{{.State.ExitCode}}", &container]),
                None,
            )
            .trim()
            .to_owned()
        })
    }

    /// `podman kube down` on the same objects: removes the pod and its containers.
    fn down(mut self) {
        run(podman().args(["kube", "down"]).arg(&self.manifest), None);
        self.down = true;
        let exists = podman()
            .args(["pod", "exists", &self.pod])
            .status()
            .expect("podman runs");
        assert!(
            !exists.success(),
            "podman kube down left the pod {}",
            self.pod
        );
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if !self.down {
            if thread::panicking() {
                eprintln!("container logs:\n{}", self.logs());
            }
            let _ = podman().args(["kube", "down"]).arg(&self.manifest).output();
        }
        let _ = fs::remove_file(&self.manifest);
    }
}
