//! `deploy/`: every Kubernetes manifest read into the API's own types (k8s-openapi; a field the
//! API does not know fails), every container's arguments parsed by l2tpkit's own flags after
//! Kubernetes' `$(VAR)` expansion, the capabilities each role holds against a table, the load
//! agents' Indexed Job and the endpoints' StatefulSet; the systemd units through
//! `systemd-analyze verify` and the same flags; the image's final stage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, PersistentVolumeClaim, Pod, PodSpec, PodTemplateSpec, Secret,
    Service,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use l2tpkit_tests::{repo_root, require};

/// The binary's commands the deployment runs (the `Cli` of `cli/src/main.rs` is the binary's
/// own, so the roles are gathered here from the library's argument types).
#[derive(Debug, Parser)]
#[command(name = "l2tpkit")]
enum Cli {
    Lac(l2tpkit::lac::LacArgs),
    Merge(l2tpkit::merge::MergeArgs),
    Endpoint(l2tpkit::endpoint::EndpointCommand),
    Master(l2tpkit::master::MasterArgs),
    Nat(l2tpkit::nat::NatArgs),
    Agent(l2tpkit::agent::AgentArgs),
    Ctl(l2tpkit::ctl::CtlArgs),
}

/// What a container of each role may hold: the capabilities it adds (every other one is
/// dropped), whether it runs as the image's non-root user, and whether it is on its node's
/// network. The role is the l2tpkit command it runs, or the program its `command` names.
struct RoleRule {
    role: &'static str,
    add: &'static [&'static str],
    non_root: bool,
    host_network: bool,
}

const ROLES: &[RoleRule] = &[
    // Plain UDP sockets on ephemeral ports, and its files.
    RoleRule {
        role: "lac",
        add: &[],
        non_root: true,
        host_network: false,
    },
    // Reads the shards' files, writes the merged ones.
    RoleRule {
        role: "merge",
        add: &[],
        non_root: true,
        host_network: false,
    },
    // UDP sockets above port 1023 and a TCP metrics listener; PPP in the process.
    RoleRule {
        role: "endpoint",
        add: &[],
        non_root: true,
        host_network: true,
    },
    // The raw IP socket (IP_HDRINCL) that forwards each SCCRQ with the initiator's source.
    // Root holding NET_RAW alone: Kubernetes gives a non-root process no capability (no ambient
    // capabilities), and a file capability would keep the binary from starting where every
    // capability is dropped.
    RoleRule {
        role: "master",
        add: &["NET_RAW"],
        non_root: false,
        host_network: true,
    },
    // The raw IP socket, and the packet sockets that tap the LAN, send frames on it and read
    // the public receive ring. Root holding NET_RAW alone, as the master.
    RoleRule {
        role: "nat",
        add: &["NET_RAW"],
        non_root: false,
        host_network: true,
    },
    // `sleep`, holding the results volume for `kubectl cp`.
    RoleRule {
        role: "sleep",
        add: &[],
        non_root: true,
        host_network: false,
    },
];

/// The image's non-root user (deploy/Dockerfile's USER).
const IMAGE_UID: i64 = 10001;
const BINARY: &str = "/usr/local/bin/l2tpkit";
const COMPLETION_INDEX: &str = "metadata.annotations['batch.kubernetes.io/job-completion-index']";
const JOB_UID: &str = "metadata.labels['batch.kubernetes.io/controller-uid']";
const POD_INDEX: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

/// Boxed: the API types run to kilobytes each.
enum Object {
    Job(Box<Job>),
    Deployment(Box<Deployment>),
    StatefulSet(Box<StatefulSet>),
    Service(Box<Service>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
    Claim(Box<PersistentVolumeClaim>),
    Pod(Box<Pod>),
}

struct Manifest {
    /// `deploy/k8s/FILE #DOC`, for messages.
    at: String,
    name: String,
    object: Object,
}

/// Every document of every `.yaml` under deploy/k8s/, typed by its `kind`.
fn manifests() -> Vec<Manifest> {
    let dir = repo_root().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut manifests = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for (i, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let at = format!("deploy/k8s/{name} #{}", i + 1);
            let value = Value::deserialize(document).unwrap_or_else(|err| panic!("{at}: {err}"));
            if value.is_null() {
                continue;
            }
            let kind = value["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no kind"));
            let object = match kind {
                "Job" => Object::Job(Box::new(typed(&value, &at))),
                "Deployment" => Object::Deployment(Box::new(typed(&value, &at))),
                "StatefulSet" => Object::StatefulSet(Box::new(typed(&value, &at))),
                "Service" => Object::Service(Box::new(typed(&value, &at))),
                "ConfigMap" => Object::ConfigMap(Box::new(typed(&value, &at))),
                "Secret" => Object::Secret(Box::new(typed(&value, &at))),
                "PersistentVolumeClaim" => Object::Claim(Box::new(typed(&value, &at))),
                "Pod" => Object::Pod(Box::new(typed(&value, &at))),
                other => panic!("{at}: kind {other} is not one this test knows"),
            };
            let name = value["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no metadata.name"))
                .to_string();
            manifests.push(Manifest { at, name, object });
        }
    }
    manifests
}

/// The API object, and an error for anything it does not hold: k8s-openapi skips fields it
/// does not know, so the object is written back and compared with the document.
fn typed<T: DeserializeOwned + Serialize>(value: &Value, at: &str) -> T {
    let object: T =
        serde_json::from_value(value.clone()).unwrap_or_else(|err| panic!("{at}: {err}"));
    let back = serde_json::to_value(&object).unwrap();
    let mut lost = Vec::new();
    differences(value, &back, String::new(), &mut lost);
    assert!(
        lost.is_empty(),
        "{at}: not as the Kubernetes API reads it (a misspelt or misplaced field?): {}",
        lost.join("; ")
    );
    object
}

fn differences(written: &Value, read: &Value, path: String, out: &mut Vec<String>) {
    match (written, read) {
        (Value::Object(w), Value::Object(r)) => {
            for (key, value) in w {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match r.get(key) {
                    Some(back) => differences(value, back, at, out),
                    None => out.push(format!("{at} is not a field there")),
                }
            }
            for key in r.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{path}.{key} appeared"));
            }
        }
        (Value::Array(w), Value::Array(r)) if w.len() == r.len() => {
            for (i, (w, r)) in w.iter().zip(r).enumerate() {
                differences(w, r, format!("{path}[{i}]"), out);
            }
        }
        _ if written == read => {}
        _ => out.push(format!("{path}: {written} read as {read}")),
    }
}

/// A pod template, where it came from, and how many pods it makes (the values an index takes).
struct PodSource<'a> {
    at: &'a str,
    owner: &'a str,
    spec: &'a PodSpec,
    labels: BTreeMap<String, String>,
    /// Indexed Job: its completions; StatefulSet: its replicas; others: 1.
    indices: u32,
    kind: &'static str,
}

fn template<'a>(
    m: &'a Manifest,
    template: &'a PodTemplateSpec,
    indices: u32,
    kind: &'static str,
) -> PodSource<'a> {
    PodSource {
        at: &m.at,
        owner: &m.name,
        spec: template
            .spec
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no pod spec", m.at)),
        labels: template
            .metadata
            .as_ref()
            .and_then(|meta| meta.labels.clone())
            .unwrap_or_default(),
        indices,
        kind,
    }
}

fn pods(manifests: &[Manifest]) -> Vec<PodSource<'_>> {
    let mut pods = Vec::new();
    for m in manifests {
        match &m.object {
            Object::Job(job) => {
                let spec = job.spec.as_ref().unwrap();
                let indexed = spec.completion_mode.as_deref() == Some("Indexed");
                let n = if indexed {
                    spec.completions.unwrap_or(1)
                } else {
                    1
                };
                let kind = if indexed { "IndexedJob" } else { "Job" };
                pods.push(template(m, &spec.template, n as u32, kind));
            }
            Object::Deployment(d) => pods.push(template(m, &d.spec.template, 1, "Deployment")),
            Object::StatefulSet(s) => {
                let spec = &s.spec;
                let replicas = spec.replicas.unwrap_or(1) as u32;
                pods.push(template(m, &spec.template, replicas, "StatefulSet"));
            }
            Object::Pod(p) => pods.push(PodSource {
                at: &m.at,
                owner: &m.name,
                spec: p.spec.as_ref().unwrap(),
                labels: p.metadata.labels.clone().unwrap_or_default(),
                indices: 1,
                kind: "Pod",
            }),
            _ => {}
        }
    }
    pods
}

/// The role a container plays: the l2tpkit command in its args, or the program its command
/// runs instead of the image's entrypoint.
fn role(container: &Container) -> String {
    match &container.command {
        Some(command) => command[0].rsplit('/').next().unwrap().to_string(),
        None => container
            .args
            .as_ref()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_default(),
    }
}

fn env<'a>(container: &'a Container, name: &str) -> &'a EnvVar {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("container {}: no env {name}", container.name))
}

fn field_path(var: &EnvVar) -> Option<&str> {
    let field = var.value_from.as_ref()?.field_ref.as_ref()?;
    Some(field.field_path.as_str())
}

/// The value of `--flag` in `args`, written `--flag=VALUE` or `--flag VALUE`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let with_equals = format!("{name}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if arg == name {
            args.get(i + 1).map(String::as_str)
        } else {
            arg.strip_prefix(&with_equals)
        }
    })
}

/// `$(NAME)`, the whole value, or None.
fn reference(value: &str) -> Option<&str> {
    value.strip_prefix("$(")?.strip_suffix(')')
}

/// What the cluster would hand the variable `var` in pod `index` of `pod`: literal values as
/// they are, config map keys looked up, secrets checked to exist, the downward API's fields
/// as a plausible pod of that kind would see them.
fn resolve(var: &EnvVar, pod: &PodSource, index: u32, manifests: &[Manifest]) -> String {
    let at = format!("{} env {}", pod.at, var.name);
    if let Some(value) = &var.value {
        return value.clone();
    }
    let from = var
        .value_from
        .as_ref()
        .unwrap_or_else(|| panic!("{at}: no value"));
    if let Some(field) = &from.field_ref {
        return match (field.field_path.as_str(), pod.kind) {
            ("metadata.name", "StatefulSet") => format!("{}-{index}", pod.owner),
            ("metadata.name", _) => format!("{}-5d8f7c9b4-x2k7q", pod.owner),
            ("status.podIP", _) => format!("198.19.0.{}", 20 + index),
            (COMPLETION_INDEX, "IndexedJob") => index.to_string(),
            (JOB_UID, "Job" | "IndexedJob") => "3f6c2a51-8e0d-4b7a-9c1e-52d4a7b0e913".into(),
            (POD_INDEX, "StatefulSet") => index.to_string(),
            (path, kind) => panic!("{at}: field {path} is not set on the pods of a {kind}"),
        };
    }
    if let Some(key) = &from.config_map_key_ref {
        let data = manifests
            .iter()
            .find_map(|m| match &m.object {
                Object::ConfigMap(c) if m.name == key.name => {
                    Some(c.data.clone().unwrap_or_default())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{at}: no ConfigMap {} in deploy/k8s", key.name));
        return data
            .get(&key.key)
            .unwrap_or_else(|| panic!("{at}: ConfigMap {} has no key {}", key.name, key.key))
            .clone();
    }
    if let Some(key) = &from.secret_key_ref {
        let secret = manifests
            .iter()
            .find_map(|m| match &m.object {
                Object::Secret(s) if m.name == key.name => Some(s),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{at}: no Secret {} in deploy/k8s", key.name));
        let keys: BTreeSet<&String> = (secret.string_data.iter().flat_map(|d| d.keys()))
            .chain(secret.data.iter().flat_map(|d| d.keys()))
            .collect();
        assert!(
            keys.contains(&key.key),
            "{at}: Secret {} has no key {}",
            key.name,
            key.key
        );
        return format!("a-secret-for-{}", key.key);
    }
    panic!("{at}: a source this test does not know")
}

/// `text` with `$(VAR)` expanded as Kubernetes does for `args` and `command` (`$$` is a `$`);
/// a reference to a variable the container does not define would reach the program as it is,
/// so it fails here.
fn expand(text: &str, vars: &BTreeMap<String, String>, at: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(open) = rest.strip_prefix("$(") {
            let close = open
                .find(')')
                .unwrap_or_else(|| panic!("{at}: {text:?}: no ')'"));
            let name = &open[..close];
            let value = vars.get(name).unwrap_or_else(|| {
                panic!("{at}: {text:?} refers to $({name}), which is not in the container's env")
            });
            out.push_str(value);
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The container's args as pod `index` runs them.
fn expanded_args(
    c: &Container,
    pod: &PodSource,
    index: u32,
    manifests: &[Manifest],
) -> Vec<String> {
    let vars: BTreeMap<String, String> = (c.env.iter().flatten())
        .map(|var| (var.name.clone(), resolve(var, pod, index, manifests)))
        .collect();
    let at = format!("{} container {}", pod.at, c.name);
    c.args
        .iter()
        .flatten()
        .map(|arg| expand(arg, &vars, &at))
        .collect()
}

fn parse(args: &[String], at: &str) -> Cli {
    let line = std::iter::once("l2tpkit").chain(args.iter().map(String::as_str));
    Cli::try_parse_from(line)
        .unwrap_or_else(|err| panic!("{at}: l2tpkit {}:\n{err}", args.join(" ")))
}

fn claim_of<'a>(spec: &'a PodSpec, volume: &str) -> Option<&'a str> {
    let volume = spec.volumes.iter().flatten().find(|v| v.name == volume)?;
    Some(volume.persistent_volume_claim.as_ref()?.claim_name.as_str())
}

/// The claim mounted at `path` (or above it) in `c`, and the mount's path.
fn claim_at<'a>(spec: &'a PodSpec, c: &'a Container, path: &str) -> Option<(&'a str, &'a str)> {
    (c.volume_mounts.iter().flatten())
        .filter(|mount| Path::new(path).starts_with(&mount.mount_path))
        .find_map(|mount| Some((claim_of(spec, &mount.name)?, mount.mount_path.as_str())))
}

#[test]
fn manifests_are_api_objects_and_parse_as_l2tpkit_commands() {
    let manifests = manifests();
    let pods = pods(&manifests);
    let mut seen = BTreeSet::new();
    let mut images = BTreeSet::new();
    for pod in &pods {
        for c in &pod.spec.containers {
            let at = format!("{} container {}", pod.at, c.name);
            let role = role(c);
            seen.insert(role.clone());
            images.insert(c.image.clone().unwrap_or_default());
            if let Some(command) = &c.command {
                // Only what the table names may replace the entrypoint.
                assert!(
                    ROLES.iter().any(|r| r.role == command[0]) && command[0] != "l2tpkit",
                    "{at}: command {command:?}: leave it out (the image's entrypoint is {BINARY})"
                );
            } else {
                for index in 0..pod.indices {
                    let args = expanded_args(c, pod, index, &manifests);
                    parse(&args, &format!("{at} (pod {index})"));
                }
            }
            for probe in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe] {
                let Some(command) = probe
                    .as_ref()
                    .and_then(|p| p.exec.as_ref()?.command.as_ref())
                else {
                    continue;
                };
                assert_eq!(command[0], BINARY, "{at}: probe {command:?}");
                parse(&command[1..], &format!("{at} probe"));
            }
        }
    }
    assert_eq!(images.len(), 1, "one image for every role: {images:?}");
    let table: BTreeSet<String> = ROLES.iter().map(|r| r.role.to_string()).collect();
    assert_eq!(
        seen, table,
        "the roles the manifests run and the test's table"
    );
}

#[test]
fn every_container_holds_only_its_roles_capabilities() {
    let manifests = manifests();
    for pod in pods(&manifests) {
        let host_network = pod.spec.host_network == Some(true);
        for c in &pod.spec.containers {
            let at = format!("{} container {}", pod.at, c.name);
            let role = role(c);
            let rule = ROLES
                .iter()
                .find(|r| r.role == role)
                .unwrap_or_else(|| panic!("{at}: role {role:?} is not in the table"));
            let sc = c
                .security_context
                .as_ref()
                .unwrap_or_else(|| panic!("{at}: no securityContext"));
            let caps = sc
                .capabilities
                .as_ref()
                .unwrap_or_else(|| panic!("{at}: no capabilities"));
            assert_eq!(
                caps.drop.as_deref(),
                Some(&["ALL".to_string()][..]),
                "{at}: drop"
            );
            let mut added: Vec<&str> = caps.add.iter().flatten().map(String::as_str).collect();
            added.sort_unstable();
            assert_eq!(added, rule.add, "{at}: capabilities added for {role}");
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{at}: allowPrivilegeEscalation"
            );
            assert_ne!(sc.privileged, Some(true), "{at}: privileged");
            assert_eq!(
                sc.read_only_root_filesystem,
                Some(true),
                "{at}: readOnlyRootFilesystem"
            );
            if rule.non_root {
                assert_eq!(sc.run_as_non_root, Some(true), "{at}: runAsNonRoot");
                assert_eq!(sc.run_as_user, Some(IMAGE_UID), "{at}: runAsUser");
            } else {
                // Said outright, so that nobody takes the image's USER for what runs.
                assert_eq!(sc.run_as_user, Some(0), "{at}: runAsUser");
                assert_eq!(sc.run_as_non_root, Some(false), "{at}: runAsNonRoot");
            }
            assert_eq!(
                host_network, rule.host_network,
                "{at}: hostNetwork for {role}"
            );
            if host_network {
                // Cluster DNS still, on the node's network.
                assert_eq!(
                    pod.spec.dns_policy.as_deref(),
                    Some("ClusterFirstWithHostNet"),
                    "{at}"
                );
            }
        }
    }
}

fn job<'a>(manifests: &'a [Manifest], role: &str) -> (&'a Manifest, &'a Job, &'a Container) {
    manifests
        .iter()
        .find_map(|m| match &m.object {
            Object::Job(job) => {
                let spec = job.spec.as_ref()?.template.spec.as_ref()?;
                let c = spec.containers.iter().find(|c| self::role(c) == role)?;
                Some((m, &**job, c))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Job runs {role}"))
}

#[test]
fn load_agents_are_an_indexed_job_of_shards_on_a_shared_volume() {
    let manifests = manifests();
    let (m, agents, lac) = job(&manifests, "lac");
    let spec = agents.spec.as_ref().unwrap();
    let at = &m.at;
    assert_eq!(
        spec.completion_mode.as_deref(),
        Some("Indexed"),
        "{at}: completionMode"
    );
    let n = spec
        .completions
        .unwrap_or_else(|| panic!("{at}: no completions"));
    assert!(n >= 1, "{at}: completions {n}");
    assert_eq!(spec.parallelism, Some(n), "{at}: every shard runs at once");
    // A retried shard would send its share of the load twice and overwrite its files.
    assert_eq!(
        spec.backoff_limit_per_index,
        Some(0),
        "{at}: backoffLimitPerIndex"
    );
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.restart_policy.as_deref(),
        Some("Never"),
        "{at}: restartPolicy"
    );

    let args = lac.args.as_deref().unwrap();
    let shard = flag(args, "--shard").unwrap_or_else(|| panic!("{at}: no --shard"));
    let (index, count) = shard
        .split_once('/')
        .unwrap_or_else(|| panic!("{at}: --shard {shard}"));
    assert_eq!(
        count,
        n.to_string(),
        "{at}: --shard {shard}: N is completions"
    );
    let index = reference(index).unwrap_or_else(|| panic!("{at}: --shard {shard}: I from env"));
    assert_eq!(
        field_path(env(lac, index)),
        Some(COMPLETION_INDEX),
        "{at}: {index}"
    );
    let run_id = flag(args, "--run-id").unwrap_or_else(|| panic!("{at}: no --run-id"));
    let run_id = reference(run_id).unwrap_or_else(|| panic!("{at}: --run-id {run_id}"));
    assert_eq!(
        field_path(env(lac, run_id)),
        Some(JOB_UID),
        "{at}: {run_id}"
    );

    // Every shard's --shard, as its pod expands it: 0/N to N-1/N, each once.
    let source = pods(&manifests).into_iter().find(|p| p.at == m.at).unwrap();
    let shards: BTreeSet<String> = (0..n as u32)
        .map(|i| {
            flag(&expanded_args(lac, &source, i, &manifests), "--shard")
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: BTreeSet<String> = (0..n).map(|i| format!("{i}/{n}")).collect();
    assert_eq!(shards, expected, "{at}");

    // --out-dir on a ReadWriteMany claim that the merge Job reads, and writes under.
    let out_dir = flag(args, "--out-dir").unwrap_or_else(|| panic!("{at}: no --out-dir"));
    let (claim, mount) = claim_at(pod, lac, out_dir)
        .unwrap_or_else(|| panic!("{at}: --out-dir {out_dir} is on no PersistentVolumeClaim"));
    let pvc = manifests
        .iter()
        .find_map(|m| match &m.object {
            Object::Claim(pvc) if m.name == claim => Some(pvc),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{at}: no PersistentVolumeClaim {claim} in deploy/k8s"));
    let modes = pvc
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    assert!(
        modes.iter().any(|m| m == "ReadWriteMany"),
        "{claim}: {modes:?}: agents on many nodes"
    );

    let (m, merge, merge_c) = job(&manifests, "merge");
    let merge_pod = merge.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let Cli::Merge(merge_args) = parse(merge_c.args.as_deref().unwrap(), &m.at) else {
        unreachable!()
    };
    let shard_dir = Path::new(out_dir).strip_prefix(mount).unwrap();
    for input in &merge_args.inputs {
        let (merge_claim, merge_mount) = claim_at(merge_pod, merge_c, &input.to_string_lossy())
            .unwrap_or_else(|| panic!("{}: {} is on no claim", m.at, input.display()));
        assert_eq!(
            merge_claim, claim,
            "{}: merges another volume than the agents'",
            m.at
        );
        assert_eq!(
            input.strip_prefix(merge_mount).unwrap(),
            shard_dir,
            "{}: reads {}, the agents write {out_dir}",
            m.at,
            input.display()
        );
    }
    let output = merge_args
        .output
        .as_ref()
        .unwrap_or_else(|| panic!("{}: no -o", m.at));
    let (out_claim, _) = claim_at(merge_pod, merge_c, &output.to_string_lossy())
        .unwrap_or_else(|| panic!("{}: -o {} is on no claim", m.at, output.display()));
    assert_eq!(
        out_claim, claim,
        "{}: the report stays beside the shards",
        m.at
    );
}

#[test]
fn endpoints_are_a_statefulset_with_stable_names_and_disjoint_tunnel_id_blocks() {
    let manifests = manifests();
    let (m, set) = manifests
        .iter()
        .find_map(|m| match &m.object {
            Object::StatefulSet(s) => Some((m, s)),
            _ => None,
        })
        .expect("a StatefulSet of endpoints");
    let at = &m.at;
    let spec = &set.spec;
    let replicas = spec.replicas.unwrap_or_else(|| panic!("{at}: no replicas"));
    let service = spec
        .service_name
        .as_deref()
        .unwrap_or_else(|| panic!("{at}: no serviceName"));
    let headless = manifests
        .iter()
        .find_map(|m| match &m.object {
            Object::Service(s) if m.name == service => s.spec.as_ref(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{at}: no Service {service} for its pods' names"));
    assert_eq!(
        headless.cluster_ip.as_deref(),
        Some("None"),
        "{service}: headless"
    );
    let source = pods(&manifests).into_iter().find(|p| p.at == m.at).unwrap();
    for (key, value) in headless.selector.iter().flatten() {
        assert_eq!(
            source.labels.get(key),
            Some(value),
            "{service} selects {key}={value}"
        );
    }
    let endpoint = (source.spec.containers.iter())
        .find(|c| role(c) == "endpoint")
        .unwrap_or_else(|| panic!("{at}: no endpoint container"));
    let args = endpoint.args.as_deref().unwrap();

    // Its name in the cluster is its pod's: l2tpkit-endpoint-0, -1, ...
    let name = flag(args, "--name")
        .and_then(reference)
        .unwrap_or_else(|| panic!("{at}: --name"));
    assert_eq!(
        field_path(env(endpoint, name)),
        Some("metadata.name"),
        "{at}: --name"
    );
    let ids = flag(args, "--tunnel-ids").unwrap_or_else(|| panic!("{at}: no --tunnel-ids"));
    let (index, count) = ids
        .split_once('/')
        .unwrap_or_else(|| panic!("{at}: --tunnel-ids {ids}"));
    assert_eq!(
        count,
        replicas.to_string(),
        "{at}: --tunnel-ids {ids}: N is replicas"
    );
    let index = reference(index).unwrap_or_else(|| panic!("{at}: --tunnel-ids {ids}: I from env"));
    assert_eq!(
        field_path(env(endpoint, index)),
        Some(POD_INDEX),
        "{at}: {index}"
    );

    let master_lan = master_lan(&manifests);
    let mut blocks = Vec::new();
    let mut pools = Vec::new();
    let mut names = BTreeSet::new();
    for i in 0..replicas as u32 {
        let args = expanded_args(endpoint, &source, i, &manifests);
        let Cli::Endpoint(command) = parse(&args, at) else {
            unreachable!()
        };
        let block = l2tpkit::endpoint::parse_ids(command.args.tunnel_ids.as_deref().unwrap())
            .unwrap_or_else(|err| panic!("{at} pod {i}: {err}"))
            .unwrap_or_else(|| {
                panic!("{at} pod {i}: --tunnel-ids any: the master routes by blocks")
            });
        let len = u32::from(block.1) - u32::from(block.0) + 1;
        assert!(
            command.args.capacity <= len,
            "{at} pod {i}: --capacity past its {len} IDs"
        );
        let master = command
            .args
            .master
            .unwrap_or_else(|| panic!("{at}: no --master"));
        assert_eq!(
            *master.ip(),
            master_lan,
            "{at}: reports where the master listens"
        );
        names.insert(command.args.name.clone());
        blocks.push(block);
        pools.push(command.ppp.pool);
    }
    assert_eq!(names.len(), replicas as usize, "{at}: names {names:?}");
    blocks.sort_unstable();
    for pair in blocks.windows(2) {
        assert!(
            pair[0].1 < pair[1].0,
            "{at}: Tunnel ID blocks overlap: {pair:?}"
        );
    }
    // No two endpoints hand a subscriber the same address.
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            assert!(
                !a.contains(b.network) && !b.contains(a.network),
                "{at}: pools {a} and {b}"
            );
        }
    }
}

/// The master's `--lan` as its pod expands it.
fn master_lan(manifests: &[Manifest]) -> std::net::Ipv4Addr {
    let pods = pods(manifests);
    let (pod, c) = pods
        .iter()
        .find_map(|p| Some((p, p.spec.containers.iter().find(|c| role(c) == "master")?)))
        .expect("a master");
    let Cli::Master(args) = parse(&expanded_args(c, pod, 0, manifests), pod.at) else {
        unreachable!()
    };
    args.lan.addr
}

#[test]
fn the_report_key_comes_from_one_secret_shipped_empty() {
    let manifests = manifests();
    let mut sources = BTreeSet::new();
    for pod in pods(&manifests) {
        for c in &pod.spec.containers {
            let Some(key) = c.args.as_deref().and_then(|a| flag(a, "--report-key")) else {
                continue;
            };
            let var = reference(key).unwrap_or_else(|| panic!("{}: --report-key {key}", pod.at));
            let from = env(c, var)
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref());
            let from = from.unwrap_or_else(|| panic!("{}: {var} is not from a Secret", pod.at));
            sources.insert((from.name.clone(), from.key.clone()));
        }
    }
    assert_eq!(
        sources.len(),
        1,
        "master and endpoints share one key: {sources:?}"
    );
    // A key written in the repository would be everyone's: the Secret is a shape to fill in.
    for m in &manifests {
        if let Object::Secret(secret) = &m.object {
            assert!(secret.data.is_none(), "{}: data", m.at);
            for (key, value) in secret.string_data.iter().flatten() {
                assert!(value.is_empty(), "{}: {key} holds a value", m.at);
            }
        }
    }
}

/// A unit: its capabilities (ambient and bounding both), and whether it reads the report key.
struct UnitRule {
    file: &'static str,
    capabilities: &'static [&'static str],
    report_key: bool,
}

const UNITS: &[UnitRule] = &[
    // The raw IP socket that forwards SCCRQs with the initiator's source.
    UnitRule {
        file: "l2tpkit-master.service",
        capabilities: &["CAP_NET_RAW"],
        report_key: true,
    },
    // The raw IP socket and the packet sockets on the LAN and the public side.
    UnitRule {
        file: "l2tpkit-nat.service",
        capabilities: &["CAP_NET_RAW"],
        report_key: false,
    },
    // UDP above 1023 and TCP metrics: nothing.
    UnitRule {
        file: "l2tpkit-endpoint@.service",
        capabilities: &[],
        report_key: true,
    },
    // The packet socket that watches the LNS's traffic.
    UnitRule {
        file: "l2tpkit-agent@.service",
        capabilities: &["CAP_NET_RAW"],
        report_key: true,
    },
];

/// Values for the variables the units' environment files set, as their comments show them.
const UNIT_VARS: &[(&str, &str)] = &[
    ("CLUSTER", "198.18.0.1"),
    ("LAN", "198.19.0.10"),
    ("GLOBAL", "198.18.0.2"),
    ("LAN_IF", "eth1"),
    ("LISTEN", "198.19.0.21"),
    ("MASTER", "198.19.0.10"),
    ("TUNNEL_IDS", "0/3"),
    ("LNS", "198.19.0.31"),
    ("REPORT_KEY", "a-secret"),
];

fn units() -> Vec<(String, String)> {
    let dir = repo_root().join("deploy/systemd");
    let mut units: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "service"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    units.sort();
    units
}

/// The values of `key=` in the unit, in order.
fn unit_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .collect()
}

/// ExecStart's words as systemd hands them over: `%i` and `%t` filled, `${VAR}` one word,
/// `$VAR` split (the optional `*_ARGS` are unset: no word).
fn exec_words(exec: &str, unit: &str) -> Vec<String> {
    let vars: BTreeMap<&str, &str> = UNIT_VARS.iter().copied().collect();
    let mut words = Vec::new();
    for word in exec.split_whitespace() {
        let word = word.replace("%i", "te1").replace("%t", "/run");
        if let Some(name) = word.strip_prefix('$').filter(|w| !w.starts_with('{')) {
            assert!(
                name.ends_with("_ARGS"),
                "{unit}: ${name}: only *_ARGS split into words"
            );
            continue;
        }
        let mut out = String::new();
        let mut rest = word.as_str();
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let close = rest[i..]
                .find('}')
                .unwrap_or_else(|| panic!("{unit}: {word}"))
                + i;
            let name = &rest[i + 2..close];
            let value = vars
                .get(name)
                .unwrap_or_else(|| panic!("{unit}: ${{{name}}} is set by no env file"));
            out.push_str(value);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        words.push(out);
    }
    words
}

#[test]
fn systemd_units_hold_only_their_roles_capabilities_and_parse() {
    let units = units();
    let names: BTreeSet<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    let table: BTreeSet<&str> = UNITS.iter().map(|u| u.file).collect();
    assert_eq!(
        names, table,
        "the units in deploy/systemd and the test's table"
    );
    for (name, text) in &units {
        let rule = UNITS.iter().find(|u| u.file == name).unwrap();
        for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
            let values = unit_values(text, key);
            assert_eq!(values.len(), 1, "{name}: one {key}= line");
            let mut caps: Vec<&str> = values[0].split_whitespace().collect();
            caps.sort_unstable();
            assert_eq!(caps, rule.capabilities, "{name}: {key}");
        }
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("Restart", "on-failure"),
            ("DynamicUser", "yes"),
        ] {
            assert_eq!(unit_values(text, key), [value], "{name}: {key}");
        }
        let env_files = unit_values(text, "EnvironmentFile");
        assert_eq!(
            env_files.contains(&"/etc/l2tpkit/report-key.env"),
            rule.report_key,
            "{name}: the report key's root-only file"
        );
        let exec = unit_values(text, "ExecStart");
        assert_eq!(exec.len(), 1, "{name}: ExecStart");
        let words = exec_words(exec[0], name);
        assert_eq!(words[0], BINARY, "{name}: ExecStart");
        let cli = parse(&words[1..], name);
        let role = name
            .trim_start_matches("l2tpkit-")
            .split(['@', '.'])
            .next()
            .unwrap();
        let parsed = match cli {
            Cli::Master(_) => "master",
            Cli::Nat(_) => "nat",
            Cli::Endpoint(_) => "endpoint",
            Cli::Agent(_) => "agent",
            other => panic!("{name}: runs {other:?}"),
        };
        assert_eq!(parsed, role, "{name}");
    }
}

#[test]
fn systemd_analyze_verifies_the_units() {
    if !require("systemd-analyze") {
        return;
    }
    // `verify` wants ExecStart's program to exist: the built l2tpkit when there is one, else
    // any executable.
    let program = l2tpkit::lab::default_binary()
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| std::env::current_exe().unwrap());
    let dir = std::env::temp_dir().join(format!("l2tpkit-deploy-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in units() {
        let copy = dir.join(&name);
        std::fs::write(&copy, text.replace(BINARY, &program.to_string_lossy())).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Unknown keys are only warned about: any line about our unit fails it (other units
        // that systemd loads on the way may have their own complaints).
        let stem = name.split('.').next().unwrap();
        let ours: Vec<&str> = stderr.lines().filter(|line| line.contains(stem)).collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "{name}: systemd-analyze verify:\n{stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_image_holds_the_binary_alone_and_runs_as_non_root() {
    let text = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).unwrap();
    // Instructions, with continuation lines joined and comments dropped.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = (joined.lines().map(str::trim))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("FROM "))
        .collect();
    assert!(
        stages.len() >= 2,
        "a builder stage and a runtime stage: {stages:?}"
    );
    let builder = lines[stages[0]];
    assert!(
        builder.starts_with("FROM rust:") && builder.ends_with(" AS builder"),
        "{builder}"
    );
    assert!(
        lines[stages[0]..stages[1]]
            .iter()
            .any(|l| l.contains("cargo build --release -p l2tpkit --locked")),
        "the builder builds l2tpkit from Cargo.lock"
    );
    let last = &lines[*stages.last().unwrap()..];
    assert!(
        last[0].starts_with("FROM debian:") && last[0].ends_with("-slim"),
        "{}",
        last[0]
    );
    let mut users = Vec::new();
    for line in &last[1..] {
        let (instruction, rest) = line.split_once(' ').unwrap();
        match instruction {
            "COPY" => assert_eq!(*line, format!("COPY --from=builder /l2tpkit {BINARY}")),
            "USER" => users.push(rest),
            "ENTRYPOINT" => assert_eq!(rest, format!("[\"{BINARY}\"]")),
            "CMD" => {}
            other => panic!("final stage: {other}: nothing but the binary goes in"),
        }
    }
    assert_eq!(
        users,
        [format!("{IMAGE_UID}:{IMAGE_UID}")],
        "final stage: USER"
    );
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        ".dockerignore keeps target/ out"
    );
}
