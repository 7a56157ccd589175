"""Task specifications: the TOML an operator writes, the canonical manifest whose digest goes on chain.

Example ``task.toml``::

    [protocol]
    rounds = 3
    partitions = 4            # P
    replication = 2           # r: aggregators per partition
    quorum = 2                # q: identical digests that finalize a partition (r/2 < q <= r)
    min_contributors = 2
    update_duration = 60      # seconds
    aggregation_duration = 60 # seconds (and as long again for fallback aggregation)
    max_participants = 1000   # joins beyond this are refused on chain
    max_samples = 1000000     # on chain: an update may claim at most this many samples (its FedAvg weight)
    open_admission = false

    [security]
    max_colluders = 1         # coalition size the capture bound at `task create` is computed for

    [model]
    name = "mlp"              # logreg | mlp | cnn
    hidden = 32
    seed = 42                 # every node builds the same initial model from it

    [dataset]
    name = "digits"           # digits | breast_cancer | fashion_mnist | csv
    split = "iid"             # iid | dirichlet | quantity
    alpha = 0.5
    seed = 0
    # fashion_mnist: path = "/usr/share/datasets/fashion-mnist" (default; or $FLCHAIN_FASHION_MNIST_DIR)
    # csv: path = "site.csv" (optional: each node may pass its own file), label = "label",
    #      num_classes = 3, standardize = false

    [training]
    epochs = 1
    batch_size = 32
    lr = 0.1

    [strategy]
    name = "fedavg"           # fedavg | median | trimmed_mean
    # trim_fraction = 0.1
    # norm_bound = 100.0       # per-partition L2 bound on an update's change from the global model
                               # (default 100: honest changes measured up to ~9; tighten it per task)

    [privacy]                  # optional; docs/privacy.md
    dp_noise_multiplier = 1.0  # z: user-level DP-FedAvg, Gaussian noise of std z * C / n on the average
    dp_clip_norm = 1.0         # C: each contributor clips its whole change to this L2 norm
    dp_delta = 1e-5            # epsilon is reported at this delta
    dp_epsilon_budget = 8.0    # optional: the task gets only the rounds this budget affords
    secure_aggregation = false # true: aggregators see only masked updates (docs/privacy.md); with true:
    # secagg_threshold = 3       # t, required: 2 <= t <= min_contributors, t > security.max_colluders
    # secagg_clip = 4.0          # each contributor clips every coordinate of its change to [-clip, clip]
    # secagg_shares_duration = 60  # seconds of the shares phase (default: aggregation_duration)
    # secagg_unmask_duration = 60  # seconds of each unmask window, check then reveal (default: aggregation_duration)
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fl_chain.aggregation.contribution import ContributionRule
from fl_chain.aggregation.registry import get_strategy
from fl_chain.errors import ConfigError, PrivacyError
from fl_chain.privacy.dp import DpMechanism
from fl_chain.privacy.vss import MAX_SHARES
from fl_chain.protocol.capture import CaptureBound, worst_capture
from fl_chain.protocol.catalog import DATASET_OPTIONS, DATASETS, MODELS, SHARD_SCHEMES, check_dataset_options
from fl_chain.protocol.secagg import frac_bits_for
from fl_chain.protocol.unixfs import unixfs_digest
from fl_chain.protocol.vector import initial_model_digest

if TYPE_CHECKING:
    import numpy as np

TASK_FORMAT = "fl-chain/task"
TASK_VERSION = 1
MAX_REPLICATION = 64
MAX_PARTICIPANTS = 100_000
#: Per-partition L2 bound on an update's change when the task sets none: far above honest changes
#: (measured up to ~9 with 5 local epochs at lr 0.5 on the built-in models), far below a scaled or
#: exploding update. Tighten it per task with [strategy] norm_bound.
DEFAULT_NORM_BOUND = 100.0

#: Keys of [dataset] that choose the shards, besides the name and the dataset's own options.
_DATASET_SHARD_KEYS = ("seed", "split", "alpha")
#: [strategy] keys that configure per-contribution validation, not the aggregation strategy.
_VALIDATION_KEYS = ("norm_bound",)

_PROTOCOL_DEFAULTS: dict[str, Any] = {
    "rounds": 3,
    "partitions": 4,
    "replication": 2,
    "quorum": 2,
    "min_contributors": 2,
    "update_duration": 60,
    "aggregation_duration": 60,
    "max_participants": 1000,
    "max_samples": 1_000_000,
    "open_admission": False,
}
_SECURITY_DEFAULTS: dict[str, Any] = {"max_colluders": 1}
#: Keys of [privacy]; the dp_ ones switch differential privacy on (all but the budget required then).
_PRIVACY_KEYS = (
    "dp_noise_multiplier",
    "dp_clip_norm",
    "dp_delta",
    "dp_epsilon_budget",
    "secure_aggregation",
    "secagg_threshold",
    "secagg_shares_duration",
    "secagg_unmask_duration",
    "secagg_clip",
)
#: [privacy] keys that only a task with secure_aggregation = true may set.
_SECAGG_KEYS = ("secagg_threshold", "secagg_shares_duration", "secagg_unmask_duration", "secagg_clip")
#: Per-coordinate clip of a contributor's change under secure aggregation when the task sets none
#: (``[privacy] secagg_clip``): about four times the largest one-round change measured on the built-in
#: models (up to 1.07 with 5 epochs at lr 0.5; 0.92 with simulate's defaults, 2 epochs at lr 0.05 with
#: momentum 0.9). With the default max_participants and max_samples it leaves 21 fraction bits.
DEFAULT_SECAGG_CLIP = 4.0
_SECTIONS = ("protocol", "model", "dataset", "training", "strategy", "security", "privacy")
#: Strategies that cannot run under differential privacy or on masked (secure-aggregation) data.
_ORDER_STATISTICS = ("median", "trimmed_mean")


@dataclass(frozen=True)
class SecureAggregationConfig:
    """Secure-aggregation parameters of a task (``FLCoordinator.SecureAggregationConfig``).

    ``threshold`` is the Shamir threshold t (2 <= t <= min_contributors): a round needs t revealers,
    and a coalition of t members can rebuild any member's masks. ``shares_duration`` is the shares
    (setup) phase in seconds; ``unmask_duration`` is each of the unmask phase's two windows (check,
    then reveal) in seconds.
    """

    threshold: int
    shares_duration: int
    unmask_duration: int

    def as_tuple(self) -> tuple[int, int, int]:
        """The ABI tuple for ``createSecureTask``."""
        return (self.threshold, self.shares_duration, self.unmask_duration)


@dataclass(frozen=True)
class TaskConfig:
    """Parameters of a task, fixed at creation (see ``FLCoordinator.TaskConfig``).

    ``secure_aggregation`` is None for a task without secure aggregation (``createTask``), else its
    parameters (the task is created with ``createSecureTask``).
    """

    manifest_digest: bytes
    partitions: int
    replication: int
    quorum: int
    min_contributors: int
    update_duration: int
    aggregation_duration: int
    rounds: int
    max_participants: int = 1000
    max_samples: int = 1_000_000
    open_admission: bool = False
    secure_aggregation: SecureAggregationConfig | None = None

    def as_tuple(self) -> tuple[Any, ...]:
        """The ABI tuple for ``createTask``."""
        return (
            self.manifest_digest,
            self.partitions,
            self.replication,
            self.quorum,
            self.min_contributors,
            self.update_duration,
            self.aggregation_duration,
            self.rounds,
            self.max_participants,
            self.max_samples,
            self.open_admission,
        )


@dataclass(frozen=True)
class TaskSpec:
    """Everything a node needs to take part in a task, besides its own data."""

    protocol: dict[str, Any]
    model: dict[str, Any]
    dataset: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    strategy: dict[str, Any] = field(default_factory=dict)
    security: dict[str, Any] = field(default_factory=lambda: dict(_SECURITY_DEFAULTS))
    #: [privacy] as written (empty: no privacy mechanism; the manifest then has no privacy section).
    privacy: dict[str, Any] = field(default_factory=dict)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: str | Path) -> TaskSpec:
        """Read and validate a task TOML file."""
        source = Path(path)
        if not source.is_file():
            raise ConfigError(f"task file {source} does not exist")
        try:
            data = tomllib.loads(source.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"task file {source} is not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"task file {source} is not UTF-8 text") from None
        return cls.from_dict(data, origin=str(source))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "task") -> TaskSpec:
        """Validate a parsed task description."""
        unknown = set(data) - set(_SECTIONS)
        if unknown:
            raise ConfigError(f"{origin}: unknown section(s) {sorted(unknown)}; use {', '.join(_SECTIONS)}")
        for section in ("model", "dataset"):
            if not isinstance(data.get(section), dict) or "name" not in data[section]:
                raise ConfigError(f"{origin}: [{section}] with a name is required")
        protocol = {**_PROTOCOL_DEFAULTS, **data.get("protocol", {})}
        spec = cls(
            protocol=protocol,
            model=dict(data["model"]),
            dataset=dict(data["dataset"]),
            training={"epochs": 1, "batch_size": 32, "lr": 0.1, **data.get("training", {})},
            strategy={"name": "fedavg", **data.get("strategy", {})},
            security={**_SECURITY_DEFAULTS, **data.get("security", {})},
            privacy=dict(data.get("privacy", {})),
        )
        spec.validate(origin)
        return spec

    def validate(self, origin: str = "task") -> None:
        """Raise ConfigError naming the first out-of-range value."""
        p = self.protocol
        unknown = set(p) - set(_PROTOCOL_DEFAULTS)
        if unknown:
            raise ConfigError(f"{origin}: unknown [protocol] key(s) {sorted(unknown)}")
        for key in (
            "rounds",
            "partitions",
            "replication",
            "quorum",
            "min_contributors",
            "update_duration",
            "aggregation_duration",
            "max_participants",
            "max_samples",
        ):
            value = p[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{origin}: protocol.{key} must be a positive integer, got {value!r}")
        if p["replication"] > MAX_REPLICATION:
            raise ConfigError(
                f"{origin}: protocol.replication must be at most {MAX_REPLICATION}, got {p['replication']}"
            )
        if not (p["replication"] / 2 < p["quorum"] <= p["replication"]):
            raise ConfigError(
                f"{origin}: protocol.quorum must satisfy replication/2 < quorum <= replication "
                f"(replication={p['replication']}), got {p['quorum']}"
            )
        if p["min_contributors"] < p["quorum"]:
            raise ConfigError(
                f"{origin}: protocol.min_contributors must be >= quorum ({p['quorum']}), got {p['min_contributors']}"
            )
        if not p["min_contributors"] <= p["max_participants"] <= MAX_PARTICIPANTS:
            raise ConfigError(
                f"{origin}: protocol.max_participants must be in [min_contributors, {MAX_PARTICIPANTS}], "
                f"got {p['max_participants']}"
            )
        if p["max_samples"] >= 2**64:
            raise ConfigError(f"{origin}: protocol.max_samples must be below 2**64, got {p['max_samples']}")
        if p["partitions"] > 65535:
            raise ConfigError(f"{origin}: protocol.partitions must be at most 65535, got {p['partitions']}")
        if not isinstance(p["open_admission"], bool):
            raise ConfigError(f"{origin}: protocol.open_admission must be true or false")
        if "max_samples" in self.strategy:
            raise ConfigError(f"{origin}: max_samples is enforced on chain now: move it to [protocol]")

        if self.model["name"] not in MODELS:
            raise ConfigError(f"{origin}: unknown model {self.model['name']!r}; use one of {', '.join(MODELS)}")
        self._validate_dataset(origin)
        try:
            get_strategy(self.strategy["name"], **self.strategy_options)
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        bound = self.strategy.get("norm_bound")
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound) or bound <= 0
        ):
            raise ConfigError(f"{origin}: strategy.norm_bound must be a positive finite number, got {bound!r}")
        self._validate_security(origin)
        self._validate_privacy(origin)
        for key in ("epochs", "batch_size"):
            if not isinstance(self.training.get(key), int) or self.training[key] < 1:
                raise ConfigError(f"{origin}: training.{key} must be a positive integer")
        if not isinstance(self.training.get("lr"), (int, float)) or self.training["lr"] <= 0:
            raise ConfigError(f"{origin}: training.lr must be a positive number")
        momentum = self.training.get("momentum", 0.0)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ConfigError(f"{origin}: training.momentum must be a number in [0, 1), got {momentum!r}")
        decay = self.training.get("weight_decay", 0.0)
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < math.inf:
            raise ConfigError(f"{origin}: training.weight_decay must be a non-negative number, got {decay!r}")

    def _validate_security(self, origin: str) -> None:
        unknown = set(self.security) - set(_SECURITY_DEFAULTS)
        if unknown:
            raise ConfigError(f"{origin}: unknown [security] key(s) {sorted(unknown)}; accepted: max_colluders")
        k = self.security["max_colluders"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ConfigError(f"{origin}: security.max_colluders must be a non-negative integer, got {k!r}")

    def _validate_privacy(self, origin: str) -> None:
        """Check [privacy]: known keys, values in range, and combinations the mechanisms allow."""
        q = self.privacy
        unknown = sorted(set(q) - set(_PRIVACY_KEYS))
        if unknown:
            raise ConfigError(f"{origin}: unknown [privacy] key(s) {unknown}; accepted: {', '.join(_PRIVACY_KEYS)}")
        secure = q.get("secure_aggregation", False)
        if not isinstance(secure, bool):
            raise ConfigError(f"{origin}: privacy.secure_aggregation must be true or false, got {secure!r}")
        strategy = self.strategy["name"]
        if secure and strategy in _ORDER_STATISTICS:
            raise ConfigError(
                f"{origin}: privacy.secure_aggregation cannot run strategy {strategy}: aggregators see only masked "
                "updates, whose sum they can unmask but not their order statistics; use strategy fedavg"
            )
        if secure and "norm_bound" in self.strategy:
            raise ConfigError(
                f"{origin}: privacy.secure_aggregation cannot check strategy.norm_bound: aggregators cannot measure a "
                "masked update; remove norm_bound (contributors clip their own updates, e.g. with dp_clip_norm)"
            )
        if self.differential_privacy:
            missing = [k for k in ("dp_noise_multiplier", "dp_clip_norm", "dp_delta") if k not in q]
            if missing:
                raise ConfigError(f"{origin}: differential privacy needs privacy.{', privacy.'.join(missing)} as well")
            try:
                DpMechanism(q["dp_noise_multiplier"], q["dp_clip_norm"])
            except ConfigError as exc:
                raise ConfigError(f"{origin}: privacy.{exc}") from None
            delta = q["dp_delta"]
            if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
                raise ConfigError(f"{origin}: privacy.dp_delta must be a number in (0, 1), e.g. 1e-5, got {delta!r}")
            budget = q.get("dp_epsilon_budget")
            if budget is not None and (
                isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < math.inf
            ):
                raise ConfigError(f"{origin}: privacy.dp_epsilon_budget must be a positive number, got {budget!r}")
            if budget is not None and q["dp_noise_multiplier"] == 0:
                raise ConfigError(
                    f"{origin}: privacy.dp_epsilon_budget needs noise: with dp_noise_multiplier = 0 epsilon is "
                    "infinite; set a positive dp_noise_multiplier or remove the budget"
                )
            if strategy in _ORDER_STATISTICS:
                raise ConfigError(
                    f"{origin}: differential privacy needs strategy fedavg: its noise is calibrated to the average of "
                    f"clipped updates, and {strategy} has another sensitivity the accountant does not cover"
                )
            if "norm_bound" in self.strategy:
                raise ConfigError(
                    f"{origin}: remove strategy.norm_bound: with differential privacy every aggregator enforces "
                    "privacy.dp_clip_norm on each partition instead"
                )
        self._validate_secure_aggregation(origin, secure)
        if secure and self.differential_privacy and "secagg_clip" in q:
            raise ConfigError(
                f"{origin}: remove privacy.secagg_clip: with differential privacy each contributor clips its whole "
                "change to privacy.dp_clip_norm instead"
            )
        if secure and "secagg_threshold" not in q:
            raise ConfigError(
                f"{origin}: privacy.secure_aggregation needs privacy.secagg_threshold (t, the Shamir threshold: "
                "2 <= t <= min_contributors and t > security.max_colluders)"
            )

    def _validate_secure_aggregation(self, origin: str, secure: bool) -> None:
        """Check the secagg_ keys of [privacy]: only with secure_aggregation, t in range, positive durations.

        The threshold t must satisfy 2 <= t <= min_contributors (a round needs t revealers among at
        least min_contributors contributors; the contract enforces the same) and t > max_colluders (a
        coalition of t members rebuilds any member's masks).
        """
        q = self.privacy
        given = [k for k in _SECAGG_KEYS if k in q]
        if not secure:
            if given:
                raise ConfigError(f"{origin}: privacy.{given[0]} needs privacy.secure_aggregation = true")
            return
        t = q.get("secagg_threshold", 2)
        lowest = max(2, int(self.security["max_colluders"]) + 1)
        top = self.protocol["min_contributors"]
        if isinstance(t, bool) or not isinstance(t, int) or not lowest <= t <= top:
            raise ConfigError(
                f"{origin}: privacy.secagg_threshold must be an integer in [{lowest}, {top}] (at least 2 and above "
                f"security.max_colluders, at most protocol.min_contributors), got {t!r}"
            )
        for key in ("secagg_shares_duration", "secagg_unmask_duration"):
            value = q.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**32:
                raise ConfigError(f"{origin}: privacy.{key} must be a positive integer (seconds), got {value!r}")
        if self.protocol["max_participants"] > MAX_SHARES:
            raise ConfigError(
                f"{origin}: privacy.secure_aggregation supports at most {MAX_SHARES} participants (Shamir share "
                f"positions); lower protocol.max_participants"
            )
        clip = q.get("secagg_clip", DEFAULT_SECAGG_CLIP)
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 < clip < math.inf:
            raise ConfigError(f"{origin}: privacy.secagg_clip must be a positive number, got {clip!r}")
        try:
            frac_bits_for(int(self.protocol["max_participants"]), float(clip), int(self.protocol["max_samples"]))
        except PrivacyError as exc:
            raise ConfigError(f"{origin}: privacy.secagg_clip: {exc}") from None

    @property
    def secure_aggregation(self) -> SecureAggregationConfig | None:
        """The task's on-chain secure-aggregation parameters; None without secure aggregation.

        The phase durations default to ``protocol.aggregation_duration``.
        """
        q = self.privacy
        if not q.get("secure_aggregation", False):
            return None
        default = int(self.protocol["aggregation_duration"])
        return SecureAggregationConfig(
            threshold=int(q["secagg_threshold"]),
            shares_duration=int(q.get("secagg_shares_duration", default)),
            unmask_duration=int(q.get("secagg_unmask_duration", default)),
        )

    @property
    def secagg_clip(self) -> float:
        """Secure aggregation: the per-coordinate clip of a change (default :data:`DEFAULT_SECAGG_CLIP`)."""
        return float(self.privacy.get("secagg_clip", DEFAULT_SECAGG_CLIP))

    @property
    def secagg_frac_bits(self) -> int:
        """Secure aggregation: the fixed-point fraction bits, so that ``max_participants`` weighted
        updates (weight at most ``max_samples``, every coordinate within the clip) sum without wrapping."""
        return frac_bits_for(
            int(self.protocol["max_participants"]), self.secagg_clip, int(self.protocol["max_samples"])
        )

    def _validate_dataset(self, origin: str) -> None:
        """Check [dataset]: a known name, the shard keys, and the options that dataset accepts.

        A ``csv`` task may leave ``path`` out: each node then passes its own file.
        """

        d = self.dataset
        name = d["name"]
        if name not in DATASETS:
            raise ConfigError(f"{origin}: unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
        accepted = sorted({"name", *_DATASET_SHARD_KEYS, *DATASET_OPTIONS[name]})
        unknown = sorted(set(d) - set(accepted))
        if unknown:
            raise ConfigError(
                f"{origin}: unknown [dataset] key(s) {unknown} for dataset {name!r}; accepted: {', '.join(accepted)}"
            )
        seed = d.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"{origin}: dataset.seed must be a non-negative integer, got {seed!r}")
        if d.get("split", "iid") not in SHARD_SCHEMES:
            raise ConfigError(f"{origin}: dataset.split must be one of {', '.join(SHARD_SCHEMES)}, got {d['split']!r}")
        alpha = d.get("alpha", 0.5)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ConfigError(f"{origin}: dataset.alpha must be a positive number, got {alpha!r}")
        try:
            check_dataset_options(name, {k: v for k, v in d.items() if k in DATASET_OPTIONS[name]})
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        classes = (d.get("num_classes"), self.model.get("num_classes"))
        if None not in classes and classes[0] != classes[1]:
            raise ConfigError(
                f"{origin}: dataset.num_classes ({classes[0]}) and model.num_classes ({classes[1]}) differ"
            )

    # -- derived values -----------------------------------------------------------------------

    @property
    def strategy_options(self) -> dict[str, Any]:
        """Options of the strategy besides its name and the validation bound."""
        return {k: v for k, v in self.strategy.items() if k not in ("name", *_VALIDATION_KEYS)}

    @property
    def norm_bound(self) -> float:
        """Per-partition L2 bound on a contribution's change from the global model.

        Default :data:`DEFAULT_NORM_BOUND`.
        """
        return float(self.strategy.get("norm_bound", DEFAULT_NORM_BOUND))

    @property
    def max_samples(self) -> int:
        """Largest sample count a contribution may claim (enforced on chain)."""
        return int(self.protocol["max_samples"])

    @property
    def differential_privacy(self) -> bool:
        """Whether the task runs DP-FedAvg (any ``dp_`` key in [privacy])."""
        return any(key.startswith("dp_") for key in self.privacy)

    @property
    def dp_mechanism(self) -> DpMechanism | None:
        """The task's DP-FedAvg clip norm and noise multiplier; None without differential privacy."""
        if not self.differential_privacy:
            return None
        return DpMechanism(self.privacy["dp_noise_multiplier"], self.privacy["dp_clip_norm"])

    @property
    def dp_delta(self) -> float | None:
        """The delta epsilon is reported at; None without differential privacy."""
        return float(self.privacy["dp_delta"]) if self.differential_privacy else None

    @property
    def dp_epsilon_budget(self) -> float | None:
        """The task's epsilon budget; None if it has none."""
        budget = self.privacy.get("dp_epsilon_budget")
        return None if budget is None else float(budget)

    def epsilon_after(self, rounds: int) -> float | None:
        """Epsilon at the task's delta after ``rounds`` released rounds (every round that published a
        final partition, finalized or not); None without differential privacy."""
        mechanism = self.dp_mechanism
        if mechanism is None:
            return None
        from fl_chain.privacy.accountant import epsilon

        return epsilon(mechanism.noise_multiplier, float(self.privacy["dp_delta"]), rounds)

    def affordable_rounds(self) -> int | None:
        """The most rounds ``dp_epsilon_budget`` affords (at most protocol.rounds); None without a budget."""
        budget = self.dp_epsilon_budget
        mechanism = self.dp_mechanism
        if budget is None or mechanism is None:
            return None
        from fl_chain.privacy.accountant import affordable_rounds

        delta = float(self.privacy["dp_delta"])
        return affordable_rounds(mechanism.noise_multiplier, delta, budget, limit=self.protocol["rounds"])

    @property
    def chain_rounds(self) -> int:
        """The rounds the task gets on chain: protocol.rounds, capped by the epsilon budget.

        Raises
        ------
        ConfigError
            If the budget does not afford a single round.
        """
        affordable = self.affordable_rounds()
        if affordable is None:
            return int(self.protocol["rounds"])
        if affordable == 0:
            raise ConfigError(
                f"privacy.dp_epsilon_budget = {self.dp_epsilon_budget:g} does not afford one round at "
                f"dp_noise_multiplier = {self.privacy['dp_noise_multiplier']:g}, dp_delta = {self.dp_delta:g} "
                f"(one round costs epsilon {self.epsilon_after(1):.3g}): raise the noise multiplier or the budget"
            )
        return affordable

    def rounds_cap_note(self) -> str | None:
        """``rounds capped at 7 by the privacy budget eps=3 at delta=1e-05`` if the budget caps them, else None."""
        rounds = self.chain_rounds
        if rounds >= self.protocol["rounds"]:
            return None
        return (
            f"rounds capped at {rounds} (of {self.protocol['rounds']}) by the privacy budget "
            f"eps={self.dp_epsilon_budget:g} at delta={self.dp_delta:g} (eps after {rounds} rounds: "
            f"{self.epsilon_after(rounds):.4g})"
        )

    def contribution_rule(self) -> ContributionRule:
        """The rule every aggregator and audit of this task applies: strategy, norm bound, sample cap, DP."""
        mechanism = self.dp_mechanism
        return ContributionRule(
            strategy=get_strategy(self.strategy["name"], **self.strategy_options),
            norm_bound=None if mechanism is not None else self.norm_bound,
            max_samples=self.max_samples,
            dp=mechanism,
        )

    def check_matches_chain(self, config: TaskConfig, initial_vector: np.ndarray, *, task_id: int) -> None:
        """Refuse this task file unless it, with the initial model ``initial_vector``, is task ``task_id``
        as ``config`` (read from the chain) describes it.

        Raises
        ------
        ConfigError
            If the manifest digests differ, or the model has fewer parameters than the task has partitions.
        """
        if initial_vector.size < config.partitions:
            raise ConfigError(
                f"the model has {initial_vector.size} parameters, fewer than the task's {config.partitions} partitions"
            )
        if self.manifest_digest(initial_model_digest(initial_vector, config.partitions)) != config.manifest_digest:
            raise ConfigError(
                f"the task file does not match task {task_id} on chain (manifest digest differs: other parameters, "
                "or another torch version building a different initial model); pass the task's own --task-file"
            )

    def capture_bound(self) -> CaptureBound:
        """The worst chance that ``[security] max_colluders`` colluders decide a partition of a round."""
        p = self.protocol
        return worst_capture(
            int(self.security["max_colluders"]),
            min_contributors=p["min_contributors"],
            max_participants=p["max_participants"],
            partitions=p["partitions"],
            replication=p["replication"],
            quorum=p["quorum"],
        )

    @property
    def model_seed(self) -> int:
        """Seed of the initial model."""
        return int(self.model.get("seed", 0))

    def manifest_bytes(self, initial_model_digest: bytes) -> bytes:
        """Canonical JSON of the task manifest (its CID digest is the on-chain manifest digest)."""
        body = {
            "format": TASK_FORMAT,
            "version": TASK_VERSION,
            "protocol": self.protocol,
            "model": self.model,
            "dataset": self.dataset,
            "training": self.training,
            "strategy": self.strategy,
            "security": self.security,
            "initial_model": initial_model_digest.hex(),
        }
        if self.privacy:  # absent without privacy: manifests of tasks before [privacy] keep their digest
            body["privacy"] = self.privacy
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def manifest_digest(self, initial_model_digest: bytes) -> bytes:
        """The bytes32 committed on chain for this task."""
        return unixfs_digest(self.manifest_bytes(initial_model_digest))

    def chain_config(self, manifest_digest: bytes) -> TaskConfig:
        """The contract's view of this task."""
        p = self.protocol
        return TaskConfig(
            manifest_digest=manifest_digest,
            partitions=p["partitions"],
            replication=p["replication"],
            quorum=p["quorum"],
            min_contributors=p["min_contributors"],
            update_duration=p["update_duration"],
            aggregation_duration=p["aggregation_duration"],
            rounds=self.chain_rounds,
            max_participants=p["max_participants"],
            max_samples=p["max_samples"],
            open_admission=p["open_admission"],
            secure_aggregation=self.secure_aggregation,
        )


def parse_task_manifest(data: bytes) -> tuple[TaskSpec, bytes]:
    """A task manifest's spec and initial model digest (validated, canonical bytes required)."""
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError("task manifest is not JSON") from None
    if not isinstance(body, dict) or body.get("format") != TASK_FORMAT or body.get("version") != TASK_VERSION:
        raise ConfigError("not an fl-chain task manifest (format/version)")
    spec = TaskSpec.from_dict({k: body[k] for k in _SECTIONS if k in body}, origin="task manifest")
    initial = bytes.fromhex(body["initial_model"])
    if spec.manifest_bytes(initial) != bytes(data):
        raise ConfigError("task manifest bytes are not canonical")
    return spec, initial
