"""Every option, declared once: flag, env fallbacks, type, default, group and help.

The click options (:mod:`agent.config.flags`), the config loading (:mod:`agent.config.load`),
the ``--help`` text, the unknown ``PRESTOP_*`` warning and the error messages all derive from
``OPTIONS`` here and ``PROFILES`` in :mod:`agent.config.spec`. No imports of the rest of the
agent: the pure drain code takes its defaults from :mod:`agent.config.defaults`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from agent.config.spec import Option

# The app's own variables are those a Spring Cloud Alibaba app already has in its pod spec
# (relaxed binding turns spring.cloud.nacos.discovery.server-addr into ..._SERVER_ADDR and
# ..._SERVERADDR alike), so the agent needs no second copy of them.
_D = "SPRING_CLOUD_NACOS_DISCOVERY_"
_ON_OFF = ("on", "off")


# Shorthands for the common scopes; every field stays a keyword of Option.
_reg = partial(Option, scope="registry", group="registry")
_drain = partial(Option, scope="drain")
_side = partial(Option, scope="sidecar", group="sidecar")


OPTIONS: tuple[Option, ...] = (
    _reg(
        "nacos_addr",
        "Nacos host:port[,host:port...], optional http(s):// and context path.",
        metavar="HOST:PORT,...",
        app_env=(
            "NACOS_SERVER_ADDR",
            _D + "SERVER_ADDR",
            _D + "SERVERADDR",
            "SPRING_CLOUD_NACOS_SERVER_ADDR",
            "SPRING_CLOUD_NACOS_SERVERADDR",
        ),
    ),
    _reg(
        "context_path",
        "Nacos context path when the address has none.",
        default="/nacos",
        app_env=("NACOS_CONTEXT_PATH",),
    ),
    _reg(
        "registry",
        "Which registry to drain from.",
        kind="choice",
        choices=("nacos", "eureka"),
        noun="registry",
        default_text="whichever is configured",
        special=True,
    ),
    # eureka.client.service-url.defaultZone, in both relaxed-binding spellings.
    _reg(
        "eureka_url",
        "Eureka service URL(s), comma-separated, e.g. http://eureka:8761/eureka/; "
        "user:password@ becomes a Basic header.",
        metavar="URL,...",
        app_env=("EUREKA_CLIENT_SERVICEURL_DEFAULTZONE", "EUREKA_CLIENT_SERVICE_URL_DEFAULTZONE"),
        secret=True,  # may carry user:password@
    ),
    _reg(
        "namespace",
        "Nacos namespace id.",
        default="public",
        app_env=(_D + "NAMESPACE", "NACOS_NAMESPACE"),
    ),
    _reg("group", "Nacos group.", default="DEFAULT_GROUP", app_env=(_D + "GROUP", "NACOS_GROUP")),
    _reg(
        "cluster",
        "Nacos cluster.",
        default="DEFAULT",
        app_env=(_D + "CLUSTER_NAME", _D + "CLUSTERNAME", _D + "CLUSTER"),
    ),
    _reg(
        "username",
        "Nacos username.",
        app_env=("NACOS_USERNAME", _D + "USERNAME", "SPRING_CLOUD_NACOS_USERNAME"),
    ),
    _reg(
        "password",
        "Nacos password; prefer --password-file or NACOS_PASSWORD.",
        app_env=("NACOS_PASSWORD", _D + "PASSWORD", "SPRING_CLOUD_NACOS_PASSWORD"),
        secret=True,
    ),
    _reg("password_file", "File holding the Nacos password (e.g. a mounted Secret).", kind="file"),
    _reg(
        "service",
        "Service (Nacos) or app (Eureka) name.",
        group="instance",
        app_env=(_D + "SERVICE", "EUREKA_INSTANCE_APPNAME", "SPRING_APPLICATION_NAME"),
    ),
    _reg(
        "instance_id",
        "Eureka instance id.",
        group="instance",
        default_text="found by IP and port",
        app_env=("EUREKA_INSTANCE_INSTANCE_ID", "EUREKA_INSTANCE_INSTANCEID"),
    ),
    _reg(
        "ip",
        "The instance's IP.",
        group="instance",
        default_text="the pod IP from /etc/hosts",
        app_env=(_D + "IP", "POD_IP", "podip"),
    ),
    _reg(
        "port",
        "The instance's port.",
        group="instance",
        kind="port",
        default=8080,
        app_env=(_D + "PORT", "SERVER_PORT"),
    ),
    _reg(
        "budget",
        "Most seconds the whole command may take.",
        group="timing",
        kind="seconds",
        default=25.0,
        allow_zero=False,
    ),
    _reg(
        "http_timeout",
        "Most seconds one HTTP call may take.",
        group="timing",
        kind="seconds",
        default=3.0,
        allow_zero=False,
    ),
    _reg(
        "log_format",
        "JSON lines, console text, or auto (JSON unless a TTY).",
        group="logging",
        kind="choice",
        choices=("auto", "json", "console"),
        noun="format",
        default="auto",
    ),
    _reg(
        "log_level",
        "Lowest level logged.",
        group="logging",
        kind="choice",
        choices=("debug", "info", "warning", "error"),
        noun="level",
        default="info",
    ),
    _reg(
        "log_to_pid1",
        "Also write log lines to PID 1's stdout so they reach `kubectl logs`.",
        group="logging",
        kind="switch",
        default=True,
    ),
    _drain(
        "actuator_url",
        "The app's actuator base URL.",
        group="shutdown",
        kind="url",
        default_text="http://127.0.0.1:<MANAGEMENT_SERVER_PORT or port>/actuator",
        special=True,
    ),
    _drain(
        "shutdown",
        "How to stop the app: actuator (POST /shutdown), signal (SIGTERM) or none.",
        group="shutdown",
        kind="choice",
        choices=("actuator", "signal", "none"),
        noun="mode",
        default="actuator",
    ),
    _drain(
        "signal_target",
        "PID or process name to SIGTERM with --shutdown signal.",
        group="shutdown",
        default="1",
    ),
    _drain(
        "shutdown_timeout",
        "Seconds kept at the end for the app to stop.",
        group="shutdown",
        kind="seconds",
        default=5.0,
    ),
    _drain(
        "min_wait",
        "Never drain for less than this many seconds.",
        "timing",
        kind="seconds",
        default=2.0,
    ),
    _drain(
        "max_wait", "Never drain for more than this many seconds.", group="timing", kind="seconds"
    ),
    _drain(
        "poll_interval",
        "Seconds between traffic samples.",
        group="timing",
        kind="seconds",
        default=0.25,
        minimum=0.01,
    ),
    _drain(
        "confirm_timeout",
        "Most seconds to wait for consumers' view of the registry to drop us.",
        group="timing",
        kind="seconds",
    ),
    _drain(
        "dry_run", "Say what would be done; touch nothing.", "timing", kind="switch", default=False
    ),
    _drain(
        "quiet_window",
        "Seconds without a new request that count as quiet; auto derives it from the request "
        "rate before the take-out.",
        group="quiet",
        kind="seconds",
        default_text="auto",
        metavar="FLOAT|auto",
        special=True,
    ),
    _drain(
        "confidence",
        "Accepted chance that a silence is luck (between 0 and 1).",
        group="quiet",
        kind="number",
        default=0.001,
        special=True,
    ),
    _drain(
        "quiet_floor",
        "Shortest quiet window in seconds.",
        group="quiet",
        kind="seconds",
        default=0.3,
    ),
    _drain(
        "quiet_cap", "Longest quiet window in seconds.", group="quiet", kind="seconds", default=30.0
    ),
    _drain(
        "signals",
        "Traffic signals: auto (Prometheus, else actuator metrics, plus the kernel's socket "
        "table when readable), or a list of prometheus,actuator,kernel.",
        group="signals",
        default="auto",
        metavar="auto|LIST",
        special=True,
    ),
    _drain(
        "metrics_url",
        "Prometheus endpoint.",
        group="signals",
        kind="url",
        default_text="<actuator-url>/prometheus",
        special=True,
    ),
    _drain(
        "requests_metric",
        "Prometheus counter of served requests (Spring Boot's name).",
        group="signals",
        kind="metric",
        default="http_server_requests_seconds_count",
    ),
    _drain(
        "in_flight_metric",
        "Prometheus gauge of requests in flight (Spring Boot's name).",
        group="signals",
        kind="metric",
        default="http_server_requests_active_seconds_active_count",
    ),
    _drain(
        "consumer_actuator",
        "Tell the consumers (Nacos): each subscriber's actuator as a URL template, e.g. "
        "http://{ip}:8081/actuator ({port}: the port the registry reports). Once its "
        "nacosdiscovery view drops us, its load-balancer cache is evicted; when every "
        "subscriber let go the drain ends as soon as nothing is in flight.",
        group="consumers",
        default_text="off",
        metavar="URL-TEMPLATE|off",
        special=True,
    ),
    _drain(
        "consumer_port",
        "Shorthand: --consumer-actuator http://{ip}:PORT/actuator.",
        group="consumers",
        kind="port",
        metavar="INTEGER|auto|off",
        special=True,
    ),
    _drain(
        "consumer_auth_file",
        "File holding user:password for the consumers' actuators.",
        group="consumers",
        kind="file",
        special=True,
    ),
    _drain(
        "consumer_settle",
        "Seconds after every consumer let go, for requests already on the wire.",
        group="consumers",
        kind="seconds",
        default=0.2,
        special=True,
    ),
    _drain(
        "consumer_staleness",
        "Seconds a consumer may still route to the instance after the take-out, for the "
        "budget arithmetic.",
        group="consumers",
        kind="seconds",
    ),
    _side(
        "listen",
        "host:port to serve on (kubelet calls the pod IP).",
        default="0.0.0.0:9901",
        metavar="HOST:PORT",
        special=True,
    ),
    _side(
        "token_file",
        "File with the token /prestop requires in the X-Prestop-Token header.",
        kind="file",
        default_text="the PRESTOP_TOKEN variable",
        special=True,
    ),
    _side(
        "health_url",
        "The app's health URL.",
        kind="url",
        default_text="<actuator-url>/health",
        special=True,
    ),
    _side(
        "warmup",
        "Seconds to raise the weight to its target after start-up (0: off).",
        kind="seconds",
        default=0.0,
    ),
    _side("warmup_start_weight", "Weight the warm-up starts from.", kind="number", default=0.1),
    _side(
        "warmup_curve",
        "How the weight rises.",
        kind="choice",
        choices=("quadratic", "linear"),
        noun="curve",
        default="quadratic",
    ),
    _side(
        "term_linger",
        "Seconds to keep serving after SIGTERM for the hook to arrive.",
        kind="seconds",
        default=2.0,
    ),
    _side(
        "startup_hold",
        "on: take the new instance out as soon as it registers and put it back once the app "
        "is healthy (+ --ready-url, + --startup-delay).",
        kind="choice",
        choices=_ON_OFF,
        default_text="off; on when --startup-delay or --ready-url is set",
        special=True,
    ),
    _side(
        "startup_delay",
        "Seconds the app must stay healthy before it is put in.",
        kind="seconds",
        default=0.0,
        special=True,
    ),
    _side(
        "ready_url",
        "The app's own readiness URL; the hold lasts until it answers 2xx.",
        kind="url",
        special=True,
    ),
    Option(
        "state_dir",
        "Directory (an emptyDir) for the record of who took the instance out, so that a "
        "restarted sidecar leaves `prestop down` alone.",
        group="sidecar",
        scope="state",
        kind="file",
        default_text="none kept",
        metavar="DIRECTORY",
        special=True,
    ),
    Option(
        "grace",
        "The pod's terminationGracePeriodSeconds, to check against --budget.",
        group="check",
        scope="check",
        kind="seconds",
    ),
)
OPTIONS_BY_NAME: Mapping[str, Option] = {o.name: o for o in OPTIONS}
# PRESTOP_* variables read outside the option table.
OTHER_ENV = ("PRESTOP_TOKEN",)
