//! The manifests checked against the server they deploy. Every kustomize tree is rendered with
//! `kubectl kustomize`, and its Deployment is read back and compared with the server's own
//! configuration parser and with the endpoints the real binary serves.
//!
//! Needs kubectl: `cargo test --test k8s -- --ignored`.

mod support;

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use poem_api::server::MemoryBudget;
use serde_json::{Value, json};
use support::{TREES, effective_config, find, resolve_port, seconds, server_container};

/// Time the grace period must leave beyond drain delay + shutdown timeout: the signal's delivery,
/// ending open streams, flushing logs and the process's exit. Below this a slow node turns a
/// graceful stop into a SIGKILL.
const MIN_SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);

fn deployment(objects: &[Value]) -> &Value {
    find(objects, "Deployment", "poem-api")
}

/// The kubelet sends SIGTERM, waits `terminationGracePeriodSeconds`, then SIGKILLs. The server
/// needs drain delay + shutdown timeout of that, so the sum must fit with a margin.
#[test]
#[ignore = "needs kubectl"]
fn the_grace_period_covers_drain_delay_plus_shutdown_timeout_with_a_margin() {
    for tree in TREES {
        // Arrange
        let objects = support::render(tree);
        let deployment = deployment(&objects);
        let config = effective_config(server_container(deployment));

        // Act
        let grace = seconds(
            &deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            30,
        );
        let needed = config.drain_delay + config.shutdown_timeout + MIN_SHUTDOWN_MARGIN;

        // Assert
        assert!(
            grace >= needed,
            "{tree}: terminationGracePeriodSeconds is {grace:?}, but drain delay {:?} + shutdown timeout {:?} \
             + margin {MIN_SHUTDOWN_MARGIN:?} = {needed:?}",
            config.drain_delay,
            config.shutdown_timeout,
        );
        assert!(
            !config.drain_delay.is_zero(),
            "{tree}: without a drain delay, requests routed during endpoint removal fail"
        );
    }
}

/// A request admitted just before the listener closes may run for the whole request timeout; the
/// shutdown timeout must let it finish rather than cut it off.
#[test]
#[ignore = "needs kubectl"]
fn every_in_flight_request_can_finish_within_the_shutdown_timeout() {
    for tree in TREES {
        let objects = support::render(tree);
        let config = effective_config(server_container(deployment(&objects)));

        assert!(
            config.shutdown_timeout >= config.request_timeout,
            "{tree}: shutdown timeout {:?} is shorter than the request timeout {:?}",
            config.shutdown_timeout,
            config.request_timeout,
        );
    }
}

/// Client-side `kubectl apply` writes every field of the manifest over the live object, so a
/// `replicas` in the manifest resets what the HorizontalPodAutoscaler chose and kills the pods it
/// added, on every apply. Where an HPA scales a Deployment, the manifest must leave the field out.
#[test]
#[ignore = "needs kubectl"]
fn no_deployment_scaled_by_an_hpa_sets_replicas() {
    for tree in TREES {
        // Arrange
        let objects = support::render(tree);
        let scaled: Vec<&str> = objects
            .iter()
            .filter(|o| o["kind"] == "HorizontalPodAutoscaler")
            .filter(|hpa| hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment")
            .filter_map(|hpa| hpa["spec"]["scaleTargetRef"]["name"].as_str())
            .collect();
        assert!(!scaled.is_empty(), "{tree}: no HPA scales a Deployment");

        for name in scaled {
            // Act
            let deployment = find(&objects, "Deployment", name);

            // Assert
            assert!(
                deployment["spec"].get("replicas").is_none(),
                "{tree}: Deployment {name} is scaled by an HPA but sets replicas: {}",
                deployment["spec"]["replicas"]
            );
        }
    }
}

/// The HPA's utilization is relative to the CPU request, but what a pod can do is bounded by its
/// worker threads and its CPU limit. Under a 1-CPU limit tokio runs one worker; a 70% target of a
/// 250m request would then scale out at a sixth of a pod's capacity. The target, read back in
/// cores, must lie between half and nine tenths of what the workers can use.
#[test]
#[ignore = "needs kubectl"]
fn the_hpa_scales_out_at_a_sensible_share_of_what_the_workers_can_use() {
    for tree in TREES {
        // Arrange
        let objects = support::render(tree);
        let container = server_container(deployment(&objects));
        let hpa = find(&objects, "HorizontalPodAutoscaler", "poem-api");
        let request = support::resource(container, "requests", "cpu");
        let limit = support::resource(container, "limits", "cpu");
        let workers: f64 = support::env_var(container, "TOKIO_WORKER_THREADS")
            .unwrap_or_else(|| panic!("{tree}: TOKIO_WORKER_THREADS is not stated"))
            .parse()
            .expect("TOKIO_WORKER_THREADS is a number");
        let cpu = hpa["spec"]["metrics"]
            .as_array()
            .expect("the HPA has metrics")
            .iter()
            .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
            .unwrap_or_else(|| panic!("{tree}: the HPA does not scale on CPU"));
        assert_eq!(cpu["resource"]["target"]["type"], "Utilization", "{tree}");
        let utilization = cpu["resource"]["target"]["averageUtilization"]
            .as_f64()
            .expect("averageUtilization");

        // Act
        let capacity = limit.min(workers);
        let target = request * utilization / 100.0;

        // Assert
        assert_eq!(
            workers,
            limit.floor().max(1.0),
            "{tree}: {workers} worker threads for a CPU limit of {limit}: more would contend for \
             the quota, fewer would leave it unused"
        );
        assert!(
            (0.5 * capacity..=0.9 * capacity).contains(&target),
            "{tree}: the HPA scales out at {target:.3} CPU ({utilization}% of the {request} CPU \
             request), but a pod can use {capacity} CPU ({workers} workers, limit {limit})"
        );
    }
}

/// Requests equal to limits for CPU and memory put the pod in the Guaranteed QoS class: it gets
/// what the memory arithmetic sized it for, and is the last to go under node pressure.
#[test]
#[ignore = "needs kubectl"]
fn every_pod_is_in_the_guaranteed_qos_class() {
    for tree in TREES {
        let objects = support::render(tree);
        let container = server_container(deployment(&objects));
        for resource in ["cpu", "memory"] {
            let request = support::resource(container, "requests", resource);
            let limit = support::resource(container, "limits", resource);
            assert_eq!(
                request, limit,
                "{tree}: {resource} request {request} is not the limit {limit}"
            );
        }
    }
}

/// A container over its memory limit is OOM-killed, with every connection it held. The limit must
/// cover the server's own worst case ([`MemoryBudget`]) for the overlay's settings (connections,
/// head and body limits): a thousand clients holding unfinished uploads must meet backpressure,
/// not a restart.
#[test]
#[ignore = "needs kubectl"]
fn the_memory_limit_covers_the_servers_worst_case_for_the_overlays_settings() {
    for tree in TREES {
        // Arrange
        let objects = support::render(tree);
        let container = server_container(deployment(&objects));
        let config = effective_config(container);

        // Act
        let limit = support::resource(container, "limits", "memory");
        let budget = MemoryBudget::for_config(&config);

        // Assert
        let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
        assert!(
            limit >= budget.total as f64,
            "{tree}: memory limit {:.1} MiB is below the server's worst case of {:.1} MiB \
             ({:.1} MiB + {} API connections and the admin listener's, {} KiB each; \
             {} B heads, {} B bodies)",
            mib(limit),
            mib(budget.total as f64),
            mib(budget.base as f64),
            config.max_connections,
            budget.per_connection / 1024,
            config.header_limit,
            config.body_limit,
        );
    }
}

/// The liveness probe keeps running while the pod stops; it must not give up on a process that
/// is still draining and finishing requests, or a graceful stop becomes a restart.
#[test]
#[ignore = "needs kubectl"]
fn the_liveness_probe_outlasts_a_graceful_stop() {
    for tree in TREES {
        let objects = support::render(tree);
        let container = server_container(deployment(&objects));
        let config = effective_config(container);
        let probe = &container["livenessProbe"];

        // Kubernetes' defaults: periodSeconds 10, failureThreshold 3.
        let patience = seconds(&probe["periodSeconds"], 10)
            * u32::try_from(probe["failureThreshold"].as_u64().unwrap_or(3)).unwrap();
        let stop = config.drain_delay + config.shutdown_timeout;

        assert!(
            patience > stop,
            "{tree}: liveness gives up after {patience:?}, a graceful stop takes up to {stop:?}"
        );
    }
}

/// A misspelt variable is silently ignored by the server; here it fails the build instead.
#[test]
#[ignore = "needs kubectl"]
fn every_poem_api_variable_in_the_deployment_is_a_server_setting_with_a_valid_value() {
    for tree in TREES {
        let objects = support::render(tree);
        // effective_config panics naming the variable the server does not read or rejects.
        let config = effective_config(server_container(deployment(&objects)));
        assert_eq!(
            config.host.to_string(),
            "0.0.0.0",
            "{tree}: the server must listen on the pod's interfaces"
        );
    }
}

/// Probes hit the admin listener, on a path the server answers with 200 when healthy; checked
/// against the real binary started with the Deployment's environment.
#[test]
#[ignore = "needs kubectl"]
fn every_probe_targets_the_admin_port_on_a_path_the_server_answers() {
    for tree in TREES {
        // Arrange
        let objects = support::render(tree);
        let container = server_container(deployment(&objects));
        let config = effective_config(container);
        let server = Server::start(container);

        for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let probe = &container[kind]["httpGet"];
            assert!(
                probe.is_object(),
                "{tree}: the container has no {kind} with httpGet"
            );
            assert!(
                probe["scheme"].is_null() || probe["scheme"] == "HTTP",
                "{tree}: the admin listener speaks plain HTTP, {kind} uses {}",
                probe["scheme"]
            );

            // Act
            let port = resolve_port(container, &probe["port"]);
            let path = probe["path"].as_str().unwrap_or("/");

            // Assert
            assert_eq!(
                port, config.admin_port,
                "{tree}: {kind} targets port {port}, the admin listener is {}",
                config.admin_port
            );
            let answer = support::wait_for_status(
                server.admin,
                path,
                200,
                Duration::from_millis(50),
                Duration::from_secs(10),
            );
            if let Err(e) = answer {
                panic!(
                    "{tree}: {kind} path {path} is not answered with 200 on the admin listener: {e}"
                );
            }
        }
    }
}

/// The Service routes to the API listener and never exposes the admin listener.
#[test]
#[ignore = "needs kubectl"]
fn the_service_exposes_the_api_port_and_not_the_admin_port() {
    for tree in TREES {
        let objects = support::render(tree);
        let container = server_container(deployment(&objects));
        let config = effective_config(container);
        let service = find(&objects, "Service", "poem-api");

        let targets: Vec<u16> = service["spec"]["ports"]
            .as_array()
            .expect("the Service has ports")
            .iter()
            .map(|p| resolve_port(container, &p["targetPort"]))
            .collect();

        assert_eq!(
            targets,
            [config.port],
            "{tree}: the Service must target only the API port {}",
            config.port
        );
        let declared: Vec<u16> = container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| resolve_port(container, &p["containerPort"]))
            .collect();
        assert!(
            declared.contains(&config.port) && declared.contains(&config.admin_port),
            "{tree}: container ports {declared:?}"
        );
    }
}

/// With service links on, a Service named poem-api injects `POEM_API_PORT=tcp://…` into every pod
/// of the namespace, which the server would read as its port setting.
#[test]
#[ignore = "needs kubectl"]
fn no_service_link_variable_can_shadow_a_server_setting() {
    for tree in TREES {
        let objects = support::render(tree);
        let pod = &deployment(&objects)["spec"]["template"]["spec"];
        assert_eq!(
            pod["enableServiceLinks"], false,
            "{tree}: enableServiceLinks must be false"
        );
    }
}

/// The pod runs as the user the image is built for (container/contract.json), so files and
/// `runAsNonRoot` agree between the image and the manifests.
#[test]
#[ignore = "needs kubectl"]
fn the_pod_runs_as_the_user_of_the_container_contract() {
    let contract: Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo_root().join("container/contract.json")).unwrap(),
    )
    .unwrap();
    let (uid, gid) = contract["user"]
        .as_str()
        .and_then(|u| u.split_once(':'))
        .expect("user is uid:gid");
    for tree in TREES {
        let objects = support::render(tree);
        let pod = &deployment(&objects)["spec"]["template"]["spec"];
        let context = &server_container(deployment(&objects))["securityContext"];
        for scope in [&pod["securityContext"], context] {
            assert_eq!(scope["runAsUser"].to_string(), uid, "{tree}: runAsUser");
            assert_eq!(scope["runAsGroup"].to_string(), gid, "{tree}: runAsGroup");
            assert_eq!(scope["runAsNonRoot"], true, "{tree}: runAsNonRoot");
        }
    }
}

/// The NetworkPolicy names ports the container declares; a renamed port would silently match
/// nothing and cut all traffic.
#[test]
#[ignore = "needs kubectl"]
fn the_network_policy_refers_to_ports_the_container_declares() {
    for tree in TREES {
        let objects = support::render(tree);
        let container = server_container(deployment(&objects));
        let config = effective_config(container);
        let policy = find(&objects, "NetworkPolicy", "poem-api");

        let ports: Vec<u16> = policy["spec"]["ingress"]
            .as_array()
            .expect("ingress rules")
            .iter()
            .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
            .map(|p| resolve_port(container, &p["port"]))
            .collect();

        assert_eq!(
            ports,
            [config.port, config.admin_port],
            "{tree}: ingress ports"
        );
    }
}

/// The ServiceMonitor finds its targets through a Service; that Service must list every pod's
/// admin port (draining ones included), add no virtual IP in front of it, and be the only one
/// selected, so the API Service stays API-only. The scrape path is checked against the real
/// binary.
#[test]
#[ignore = "needs kubectl"]
fn the_service_monitor_scrapes_the_admin_port_of_every_pod_through_a_headless_service() {
    let mut checked = 0;
    for tree in TREES {
        // Arrange
        let objects = support::render(tree);
        let Some(monitor) = objects.iter().find(|o| o["kind"] == "ServiceMonitor") else {
            continue;
        };
        let container = server_container(deployment(&objects));
        let config = effective_config(container);

        // Act
        let selected: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Service")
            .filter(|s| support::selects(&monitor["spec"]["selector"], &s["metadata"]["labels"]))
            .collect();

        // Assert
        let [service] = selected.as_slice() else {
            panic!(
                "{tree}: the ServiceMonitor selects {} Services, not one",
                selected.len()
            );
        };
        assert_eq!(service["spec"]["clusterIP"], "None", "{tree}: headless");
        assert_eq!(
            service["spec"]["publishNotReadyAddresses"], true,
            "{tree}: a draining pod (readiness 503) must still be scraped"
        );
        assert!(
            support::selects(
                &json!({ "matchLabels": service["spec"]["selector"] }),
                &deployment(&objects)["spec"]["template"]["metadata"]["labels"]
            ),
            "{tree}: the metrics Service does not select the pods"
        );
        let ports = service["spec"]["ports"].as_array().expect("ports");
        let targets: Vec<u16> = ports
            .iter()
            .map(|p| resolve_port(container, &p["targetPort"]))
            .collect();
        assert_eq!(
            targets,
            [config.admin_port],
            "{tree}: metrics Service targets"
        );
        let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
        assert!(
            !endpoints.is_empty(),
            "{tree}: the ServiceMonitor has no endpoint"
        );
        let server = Server::start(container);
        for endpoint in endpoints {
            assert!(
                ports.iter().any(|p| p["name"] == endpoint["port"]),
                "{tree}: the ServiceMonitor scrapes port {}, which the Service does not name",
                endpoint["port"]
            );
            let path = endpoint["path"].as_str().unwrap_or("/metrics");
            if let Err(e) = support::wait_for_status(
                server.admin,
                path,
                200,
                Duration::from_millis(50),
                Duration::from_secs(10),
            ) {
                panic!("{tree}: the ServiceMonitor scrapes {path}, which answers no 200: {e}");
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "the production overlays have a ServiceMonitor"
    );
}

/// The alerts select their series by `job`; prometheus-operator sets that label from the
/// ServiceMonitor's `jobLabel` (the value of that label on the scraped Service). A mismatch
/// leaves every alert silent and `PoemApiAbsent` firing.
#[test]
#[ignore = "needs kubectl"]
fn the_alert_rules_select_the_job_the_service_monitor_produces() {
    let mut checked = 0;
    for tree in TREES {
        // Arrange
        let objects = support::render(tree);
        let Some(rule) = objects.iter().find(|o| o["kind"] == "PrometheusRule") else {
            continue;
        };
        let monitor = find(&objects, "ServiceMonitor", "poem-api");
        let service = find(&objects, "Service", "poem-api-metrics");
        let job_label = monitor["spec"]["jobLabel"]
            .as_str()
            .expect("the ServiceMonitor sets jobLabel");
        let job = service["metadata"]["labels"][job_label]
            .as_str()
            .unwrap_or_else(|| panic!("{tree}: the metrics Service has no label {job_label}"));

        // Act
        let selected: Vec<String> = rule["spec"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["expr"].as_str().map(str::to_owned))
            .flat_map(|expr| {
                expr.split("job=\"")
                    .skip(1)
                    .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();

        // Assert
        assert!(!selected.is_empty(), "{tree}: no rule selects a job");
        for selected in selected {
            assert_eq!(
                selected, job,
                "{tree}: a rule selects job=\"{selected}\", the ServiceMonitor produces job=\"{job}\""
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "the production overlays have a PrometheusRule"
    );
}

/// The HTTPRoute and the Ingress reach the API listener through the API Service, never the
/// admin listener.
#[test]
#[ignore = "needs kubectl"]
fn the_route_and_the_ingress_send_traffic_to_the_api_port() {
    let mut entry_points = 0;
    for tree in TREES {
        // Arrange
        let objects = support::render(tree);
        let container = server_container(deployment(&objects));
        let config = effective_config(container);
        let backend_port = |service: &str, port: &Value| -> u16 {
            let service = find(&objects, "Service", service);
            let entry = service["spec"]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .find(|p| p["port"] == *port || p["name"] == *port)
                .unwrap_or_else(|| panic!("{tree}: the Service has no port {port}"));
            resolve_port(container, &entry["targetPort"])
        };

        // Act
        let mut targets = Vec::new();
        for route in objects.iter().filter(|o| o["kind"] == "HTTPRoute") {
            for rule in route["spec"]["rules"].as_array().expect("rules") {
                for backend in rule["backendRefs"].as_array().expect("backendRefs") {
                    let service = backend["name"].as_str().expect("a backend name");
                    targets.push(backend_port(service, &backend["port"]));
                }
            }
            entry_points += 1;
        }
        for ingress in objects.iter().filter(|o| o["kind"] == "Ingress") {
            for rule in ingress["spec"]["rules"].as_array().expect("rules") {
                for path in rule["http"]["paths"].as_array().expect("paths") {
                    let service = &path["backend"]["service"];
                    let port = if service["port"]["name"].is_null() {
                        &service["port"]["number"]
                    } else {
                        &service["port"]["name"]
                    };
                    targets.push(backend_port(service["name"].as_str().expect("name"), port));
                }
            }
            entry_points += 1;
        }

        // Assert
        for target in targets {
            assert_eq!(
                target, config.port,
                "{tree}: public traffic goes to port {target}, the API listener is {}",
                config.port
            );
        }
    }
    assert_eq!(
        entry_points, 2,
        "one HTTPRoute and one Ingress across the overlays"
    );
}

/// The real binary, started with a container's environment but on loopback and free ports.
struct Server {
    child: Child,
    admin: SocketAddr,
}

impl Server {
    fn start(container: &Value) -> Self {
        let (port, admin_port) = (support::free_port(), support::free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_poem-api"));
        command.envs(support::env(container));
        command
            .env("POEM_API_HOST", "127.0.0.1")
            .env("POEM_API_PORT", port.to_string())
            .env("POEM_API_ADMIN_PORT", admin_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("the server starts");
        Server {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tracing component (k8s/components/tracing), over the minikube overlay: the server is
/// given a collector it accepts, and the one egress rule added lets exactly that traffic (and
/// the DNS lookup of its name) out of the pods that send it; the memory limit still covers the
/// worst case.
#[test]
#[ignore = "needs kubectl"]
fn the_tracing_component_opens_egress_to_the_collector_it_configures_and_nothing_else() {
    let objects = support::render_dir(&support::repo_root().join("tests/k8s/tracing-overlay"));
    let deployment = deployment(&objects);
    let container = server_container(deployment);
    let config = effective_config(container);
    let endpoint = config
        .otlp_endpoint
        .clone()
        .expect("POEM_API_OTLP_ENDPOINT set");
    let authority = endpoint.trim_start_matches("http://");
    let (host, port) = authority
        .rsplit_once(':')
        .expect("the endpoint names its port");
    let port: u16 = port.parse().unwrap();
    let collector_namespace = host.split('.').nth(1).expect("<service>.<namespace>.svc");

    let policy = find(&objects, "NetworkPolicy", "poem-api-otlp");
    let namespace = |o: &Value| o["metadata"]["namespace"].clone();
    assert_eq!(
        namespace(policy),
        namespace(deployment),
        "in the pods' namespace"
    );
    assert!(
        support::selects(
            &policy["spec"]["podSelector"],
            &deployment["spec"]["template"]["metadata"]["labels"]
        ),
        "the policy applies to the server's pods"
    );
    assert_eq!(
        policy["spec"]["policyTypes"],
        json!(["Egress"]),
        "egress only"
    );
    let rules = policy["spec"]["egress"].as_array().expect("egress rules");
    let ports = |rule: &Value| -> Vec<(u64, String)> {
        rule["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["port"].as_u64().unwrap(),
                    p["protocol"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let to_namespace = |rule: &Value| {
        rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].clone()
    };
    assert_eq!(
        rules.len(),
        2,
        "the collector and DNS, nothing else: {rules:?}"
    );
    assert_eq!(ports(&rules[0]), [(u64::from(port), "TCP".to_owned())]);
    assert_eq!(to_namespace(&rules[0]), json!(collector_namespace));
    assert!(
        rules[0]["to"][0]["podSelector"]["matchLabels"].is_object(),
        "the collector's pods only"
    );
    assert_eq!(
        ports(&rules[1]),
        [(53, "UDP".to_owned()), (53, "TCP".to_owned())],
        "DNS, to resolve the collector's name"
    );
    assert_eq!(to_namespace(&rules[1]), json!("kube-system"));

    // The base policy stays as it is: no egress of its own.
    let base = find(&objects, "NetworkPolicy", "poem-api");
    assert_eq!(base["spec"]["egress"], json!([]));

    let limit = support::resource(container, "limits", "memory");
    let budget = MemoryBudget::for_config(&config).total;
    assert!(
        limit >= budget as f64,
        "memory limit {limit} B below the worst case of {budget} B"
    );
}
