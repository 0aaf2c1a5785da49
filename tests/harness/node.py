"""A real one-node Kubernetes cluster inside a network namespace the test creates.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (with runc and the CNI bridge
plugin), kubelet and kube-proxy run as plain processes, in the order and with the flags Kubernetes'
`hack/local-up-cluster.sh` uses, each owned by PID + start time like the control plane of
tests/harness/controlplane.py. All of them live in one network namespace and one private mount
namespace (tests/harness/netns.py) and one cgroup subtree (tests/harness/cgroups.py), so:

- pod, Service and node addresses (10.88.0.0/16 pods on the bridge cni0, whose 10.88.0.1 is the node's
  address; 10.96.0.0/16 Services, programmed by kube-proxy with iptables) exist only inside that network
  namespace, and nothing there has a route out of it;
- containerd's and kubelet's state, mounts and sockets are per run (a temporary directory, tmpfs over
  /run/containerd, /var/run/netns and /var/lib/cni inside the mount namespace), never the system's;
- stop() (or a later run, for a run that was killed) finds every process and cgroup of the node.

The host reaches the API server through a 127.0.0.1 port forwarded into the namespace, so kubectl and helm
run on the host as usual. The KMS emulator runs in the test process, listening on the node address.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from kms_emulator.testing import EmulatorHandle, run_emulator
from tests.harness import pki
from tests.harness.cgroups import (
    CGROUP_ROOT,
    NodeCgroups,
    kill_subtree,
    remove_subtree,
    stale_runs,
    v1_hierarchies,
    write_owner,
)
from tests.harness.controlplane import run_kubectl, write_kubeconfig
from tests.harness.netns import Forwarder, NodeNamespace
from tests.harness.processes import ManagedProcess, ProcessSpec, child_environment, log_tail

NODE_NAME = "kmskey-node"
NODE_IP = "10.88.0.1"  # the bridge's address inside the namespace: the node's InternalIP
POD_CIDR = "10.88.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
APISERVER_PORT = 6443
STATE_PARENT = Path(tempfile.gettempdir()) / "kmskey-node"
NODE_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)
HOST_TOOLS = {
    "containerd": "containerd (Debian package containerd; hack/install-node-deps.sh)",
    "containerd-shim-runc-v2": "containerd's runc shim (Debian package containerd)",
    "runc": "runc (Debian package runc)",
    "ctr": "ctr (Debian package containerd)",
    "iptables": "iptables, for kube-proxy (Debian package iptables)",
    "unshare": "unshare (util-linux)",
    "nsenter": "nsenter (util-linux)",
    "ip": "ip (iproute2)",
}
CNI_DIR = Path("/usr/lib/cni")


class NodeError(RuntimeError):
    """The node could not be built or started; the message names the missing piece."""


def missing_pieces(kube_bin: str | None, image_archive: str | None, pause_archive: str | None) -> list[str]:
    """Everything the node needs that is not there, each as a sentence naming where it comes from."""
    problems: list[str] = []
    if not kube_bin:
        problems.append("KUBE_BIN is not set (hack/build-control-plane.sh --node prints it)")
    else:
        for name in NODE_BINARIES:
            path = Path(kube_bin) / name
            if not (path.is_file() and os.access(path, os.X_OK)):
                problems.append(f"{path} is missing: run `bash hack/build-control-plane.sh --node`")
    for tool, where in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not installed: {where}")
    for plugin in ("bridge", "host-local", "loopback"):
        if not (CNI_DIR / plugin).exists():
            problems.append(
                f"CNI plugin {CNI_DIR / plugin} is missing (Debian package containernetworking-plugins)"
            )
    for variable, archive, script in (
        ("KMSKEY_IMAGE_ARCHIVE", image_archive, "hack/build-image.sh"),
        ("KMSKEY_PAUSE_ARCHIVE", pause_archive, "hack/build-pause-image.sh"),
    ):
        if not archive or not Path(archive).is_file():
            problems.append(f"{variable} ({archive or 'unset'}) is not an OCI archive: run `bash {script}`")
    if os.geteuid() != 0:
        problems.append("the node needs root (namespaces, cgroups, mounts)")
    return problems


def sweep_stale_runs() -> list[str]:
    """Remove what killed earlier runs left: their processes, cgroups and state directories."""
    removed = []
    for run_id in stale_runs(STATE_PARENT):
        name = f"kmskey-node-{run_id}"
        kill_subtree(CGROUP_ROOT / "pids" / name, frozenset(), 15.0)
        for hierarchy in v1_hierarchies():
            remove_subtree(hierarchy / name)
        shutil.rmtree(STATE_PARENT / name, ignore_errors=True)
        removed.append(run_id)
    return removed


@dataclass(frozen=True)
class NodeImages:
    """OCI archives to load into the node's containerd, and the names the pods use."""

    operator_archive: Path
    pause_archive: Path
    pause_image: str


class NodeCluster:
    """The whole node; a context manager. `kubectl()` and `kubeconfig` work from the host."""

    def __init__(self, kube_bin: Path | str, images: NodeImages, *, start_timeout: float = 180.0) -> None:
        self.kube_bin = Path(kube_bin)
        self.images = images
        self.start_timeout = start_timeout
        self.run_id = secrets.token_hex(4)
        self.state = STATE_PARENT / f"kmskey-node-{self.run_id}"
        self.logs = self.state / "logs"
        self.processes: list[ManagedProcess] = []
        self.forwarders: list[Forwarder] = []
        self.namespace: NodeNamespace | None = None
        self.cgroups: NodeCgroups | None = None
        self._pki: pki.Pki | None = None
        self._emulators: list[contextlib.AbstractContextManager[EmulatorHandle]] = []
        self.api_forwarder: Forwarder | None = None
        self.timings: dict[str, float] = {}
        self._keep_state = os.environ.get("KMSKEY_KEEP_NODE_DIR") == "1"

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> NodeCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self._keep_state = True  # the logs named in the error stay readable
            self.stop()
            raise

    def _start(self) -> None:
        began = time.monotonic()
        sweep_stale_runs()
        self.logs.mkdir(parents=True)
        write_owner(self.state / "owner.json")
        self.cgroups = NodeCgroups(self.run_id)
        self.namespace = NodeNamespace(self.logs, cgroup_procs=self.cgroups.daemon_procs)
        self._network()
        self._pki = pki.generate(
            self.state / "pki",
            extra_ips=(NODE_IP, KUBERNETES_SERVICE_IP),
            extra_dns_names=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        )
        p = self._pki
        inside = write_kubeconfig(
            self.state / "inside.kubeconfig",
            f"https://127.0.0.1:{APISERVER_PORT}",
            p.ca_cert,
            user="admin",
            client_cert=p.admin_cert,
            client_key=p.admin_key,
        )
        self._timed("control plane", lambda: self._control_plane(inside))
        self._timed("containerd + images", self._containerd)
        self._timed("kubelet, controller-manager, scheduler, kube-proxy", lambda: self._node(inside))
        self.timings["total"] = time.monotonic() - began

    def stop(self) -> None:
        """Stop every process of the node (kubelet first, so it restarts nothing), then remove its traces."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        for handle in reversed(self._emulators):
            with contextlib.suppress(Exception):
                handle.__exit__(None, None, None)
        self._emulators.clear()
        for forwarder in self.forwarders:
            forwarder.close()
        self.forwarders.clear()
        by_name = {p.spec.name: p for p in self.processes}
        for name in ("kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"):
            if name in by_name:
                by_name[name].stop(grace_seconds=10)
        if self.cgroups is not None:
            # Containers and their shims: children of containerd, in this node's cgroups only.
            own = frozenset(p.pid for p in self.processes if p.exited() is None)
            self.cgroups.kill_all(except_pids=own)
        for process in reversed(self.processes):
            process.stop(grace_seconds=10)
        self.processes.clear()
        if self.namespace is not None:
            self.namespace.stop()
            self.namespace = None
        if self.cgroups is not None:
            self.cgroups.remove()
            self.cgroups = None
        if not self.state.exists():
            return
        if self._keep_state:  # after a failure: the logs and configuration stay, the bulky state goes
            for bulky in ("containerd", "kubelet", "etcd", "cni"):
                shutil.rmtree(self.state / bulky, ignore_errors=True)
        else:
            shutil.rmtree(self.state, ignore_errors=True)

    # -- pieces ------------------------------------------------------------------------------------------

    def _network(self) -> None:
        """Loopback and the bridge inside the namespace; private tmpfs over the runtime's default paths."""
        ns = self._ns()
        for directory in ("/run/containerd", "/var/run/netns", "/var/lib/cni"):
            Path(directory).mkdir(parents=True, exist_ok=True)  # empty mount points on the host
            ns.run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", directory)
        ns.run("ip", "link", "set", "lo", "up")
        ns.run("ip", "link", "add", "cni0", "type", "bridge")
        ns.run("ip", "addr", "add", f"{NODE_IP}/16", "dev", "cni0")
        ns.run("ip", "link", "set", "cni0", "up")
        # The namespace has no default route (nothing leaves it), so a Service address needs a route of its
        # own, or connect() fails before kube-proxy's DNAT in the OUTPUT chain can rewrite it.
        ns.run("ip", "route", "add", SERVICE_CIDR, "dev", "cni0")
        # Per-namespace switches: route pod traffic, and let iptables (kube-proxy's Service rules) see
        # traffic bridged between two pods on cni0.
        for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
            path = "/proc/sys/" + key.replace(".", "/")
            ns.run("sh", "-c", f"echo 1 > {path}")

    def _control_plane(self, inside: Path) -> None:
        p = self._require_pki()
        etcd = self._spawn(
            "etcd",
            [
                str(self.kube_bin / "etcd"),
                "--name=kmskey-node",
                f"--data-dir={self.state / 'etcd'}",
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=kmskey-node=http://127.0.0.1:2380",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.kube_bin / "kube-apiserver"),
                "--etcd-servers=http://127.0.0.1:2379",
                f"--cert-dir={self.state / 'apiserver-certs'}",
                "--bind-address=0.0.0.0",  # inside the namespace only
                f"--advertise-address={NODE_IP}",
                f"--secure-port={APISERVER_PORT}",
                f"--tls-cert-file={p.serving_cert}",
                f"--tls-private-key-file={p.serving_key}",
                f"--client-ca-file={p.ca_cert}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p.sa_public_key}",
                f"--service-account-signing-key-file={p.sa_private_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={p.admin_cert}",
                f"--kubelet-client-key={p.admin_key}",
                "--kubelet-preferred-address-types=InternalIP",
            ],
        )
        self.api_forwarder = self._forward(("127.0.0.1", APISERVER_PORT))
        write_kubeconfig(
            self.kubeconfig,
            self.server,
            p.ca_cert,
            user="admin",
            client_cert=p.admin_cert,
            client_key=p.admin_key,
        )
        self._wait_for(etcd, lambda: True, "etcd")
        self._wait_for(apiserver, self._apiserver_ready, "kube-apiserver /readyz")

    def _containerd(self) -> None:
        root = self.state / "containerd"
        (self.state / "cni" / "net.d").mkdir(parents=True)
        (self.state / "cni" / "net.d" / "10-kmskey-node.conflist").write_text(json.dumps(self._cni_config()))
        config = root / "config.toml"
        root.mkdir(parents=True, exist_ok=True)
        config.write_text(self._containerd_config(root))
        containerd = self._spawn("containerd", ["containerd", f"--config={config}"])
        self._wait_for(containerd, lambda: self.ctr("version", check=False).returncode == 0, "containerd")
        for archive in (self.images.pause_archive, self.images.operator_archive):
            self.ctr("images", "import", str(archive), timeout=300)
        listed = self.ctr("images", "list", "--quiet").stdout.split()
        if self.images.pause_image not in listed:
            raise NodeError(
                f"{self.images.pause_archive} did not load as {self.images.pause_image}: {listed}"
            )

    def _node(self, inside: Path) -> None:
        p = self._require_pki()
        assert self.cgroups is not None
        resolv = self.state / "resolv.conf"
        resolv.write_text("# the test node has no DNS\n")
        kubelet_config = self.state / "kubelet.yaml"
        kubelet_config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": False},
                        "x509": {"clientCAFile": str(p.ca_cert)},
                    },
                    "authorization": {"mode": "AlwaysAllow"},
                    "address": NODE_IP,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": self.cgroups.kubelet_root,
                    "cgroupsPerQOS": True,
                    "enforceNodeAllocatable": ["pods"],
                    "failCgroupV1": False,
                    "failSwapOn": False,
                    "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
                    "resolvConf": str(resolv),
                    "clusterDomain": "cluster.local",
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                        "nodefs.inodesFree": "1%",
                    },
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "serializeImagePulls": False,
                    "syncFrequency": "10s",
                    "fileCheckFrequency": "10s",
                    "nodeStatusUpdateFrequency": "5s",
                    "registerNode": True,
                    "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE here: leave kubelet's own score alone
                }
            )
        )
        kubelet = self._spawn(
            "kubelet",
            [
                str(self.kube_bin / "kubelet"),
                f"--config={kubelet_config}",
                f"--kubeconfig={inside}",
                f"--root-dir={self.state / 'kubelet'}",
                f"--cert-dir={self.state / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )
        controller_manager = self._spawn(
            "kube-controller-manager",
            [
                str(self.kube_bin / "kube-controller-manager"),
                f"--kubeconfig={inside}",
                f"--authentication-kubeconfig={inside}",
                f"--authorization-kubeconfig={inside}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
                f"--service-account-private-key-file={p.sa_private_key}",
                f"--root-ca-file={p.ca_cert}",
                "--use-service-account-credentials=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Quick garbage collection and namespace deletion: tests wait on both.
                "--concurrent-gc-syncs=5",
                "--namespace-sync-period=10s",
            ],
        )
        scheduler = self._spawn(
            "kube-scheduler",
            [
                str(self.kube_bin / "kube-scheduler"),
                f"--kubeconfig={inside}",
                f"--authentication-kubeconfig={inside}",
                f"--authorization-kubeconfig={inside}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
            ],
        )
        proxy_config = self.state / "kube-proxy.yaml"
        proxy_config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(inside)},
                    "mode": "iptables",
                    "clusterCIDR": POD_CIDR,
                    "hostnameOverride": NODE_NAME,
                    "healthzBindAddress": "127.0.0.1:10256",
                    "metricsBindAddress": "127.0.0.1:10249",
                    # Leave the kernel's (machine-wide) conntrack table size alone.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                    "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
                    "oomScoreAdj": 0,
                }
            )
        )
        proxy = self._spawn("kube-proxy", [str(self.kube_bin / "kube-proxy"), f"--config={proxy_config}"])
        self._wait_for(kubelet, self._node_ready, f"node {NODE_NAME} Ready")
        for process in (controller_manager, scheduler, proxy):
            if process.exited() is not None:
                raise NodeError(f"{process.spec.name} exited:\n{process.log_tail()}")
        self._wait_for(controller_manager, self._default_service_account, "the default ServiceAccount")
        self._wait_for(proxy, self._service_rules, "kube-proxy's iptables rules for the kubernetes Service")

    # -- configuration -----------------------------------------------------------------------------------

    def _cni_config(self) -> dict[str, Any]:
        return {
            "cniVersion": "0.4.0",
            "name": "kmskey-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.state / "cni" / "ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        }

    def _containerd_config(self, root: Path) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{self.containerd_socket}.ttrpc"

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{self.images.pause_image}"
  disable_apparmor = true
  # The machines drop CAP_SYS_RESOURCE from every process's bounding set, so no oom_score_adj may go
  # below containerd's own (runc fails with "failed to update /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{root / "runc"}"

[{cri}.cni]
  bin_dir = "{CNI_DIR}"
  conf_dir = "{self.state / "cni" / "net.d"}"
"""

    # -- talking to it -----------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def server(self) -> str:
        assert self.api_forwarder is not None
        return f"https://{self.api_forwarder.address}"

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd" / "containerd.sock"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubeconfig, *args, input=input, check=check, timeout=timeout)

    def ctr(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """ctr against this node's containerd (a unix socket: no network involved), namespace k8s.io."""
        argv = ["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args]
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=child_environment(), check=False
        )
        if check and result.returncode != 0:
            raise NodeError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    @contextlib.contextmanager
    def emulator(self, **kwargs: Any) -> Iterator[EmulatorHandle]:
        """The KMS emulator in this process, listening on the node address (pods reach it there).

        `handle.endpoint` is what pods dial; `forwarded_endpoint(handle)` is a 127.0.0.1 address for the
        SDK in the test process.
        """
        namespace = self._ns()
        manager = run_emulator(host=NODE_IP, **kwargs)
        handle = namespace.call_in_netns(manager.__enter__)
        self._emulators.append(manager)
        try:
            yield handle
        finally:
            if manager in self._emulators:
                self._emulators.remove(manager)
                manager.__exit__(None, None, None)

    def forwarded_endpoint(self, handle: EmulatorHandle) -> str:
        return self._forward((NODE_IP, handle.port)).address

    def forward(self, host: str, port: int) -> str:
        """A 127.0.0.1 address on the host that reaches host:port inside the namespace (a pod, a Service)."""
        return self._forward((host, port)).address

    def log(self, name: str, lines: int = 60) -> str:
        return log_tail(self.logs / f"{name}.log", lines)

    # -- internals ---------------------------------------------------------------------------------------

    def _ns(self) -> NodeNamespace:
        if self.namespace is None:
            raise NodeError("the node's namespaces do not exist (not started, or stopped)")
        return self.namespace

    def _require_pki(self) -> pki.Pki:
        if self._pki is None:
            raise NodeError("the node has not been started")
        return self._pki

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(ProcessSpec(name, self._ns().wrap(argv)), self.logs / f"{name}.log")
        self.processes.append(process)
        return process

    def _forward(self, target: tuple[str, int]) -> Forwarder:
        forwarder = Forwarder(self._ns(), target)
        self.forwarders.append(forwarder)
        return forwarder

    def _timed(self, what: str, step: Callable[[], None]) -> None:
        began = time.monotonic()
        step()
        self.timings[what] = time.monotonic() - began

    def _wait_for(self, process: ManagedProcess, probe: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error = ""
        while time.monotonic() < deadline:
            code = process.exited()
            if code is not None:
                raise NodeError(
                    f"{process.spec.name} exited with code {code} before {what}.\n"
                    f"Last lines of {process.log_path}:\n{process.log_tail()}"
                )
            try:
                if probe():
                    return
            except (OSError, http.client.HTTPException, subprocess.SubprocessError, NodeError) as error:
                last_error = str(error)[-500:]
            time.sleep(0.5)
        raise NodeError(
            f"{what}: not there within {self.start_timeout:.0f}s (last error: {last_error or 'none'}).\n"
            f"Last lines of {process.log_path}:\n{process.log_tail()}"
        )

    def _apiserver_ready(self) -> bool:
        p = self._require_pki()
        assert self.api_forwarder is not None
        context = ssl.create_default_context(cafile=str(p.ca_cert))
        context.load_cert_chain(str(p.admin_cert), str(p.admin_key))
        conn = http.client.HTTPSConnection("127.0.0.1", self.api_forwarder.port, context=context, timeout=5)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def _node_ready(self) -> bool:
        out = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conditions = json.loads(out.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _default_service_account(self) -> bool:
        return self.kubectl("-n", "default", "get", "serviceaccount", "default", check=False).returncode == 0

    def _service_rules(self) -> bool:
        rules = self._ns().run("iptables-save", "-t", "nat", check=False).stdout
        return KUBERNETES_SERVICE_IP in rules
