"""``flchain model get`` and ``flchain model export``: a round's global model, as a vector or a model file."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fl_chain.cli.common import add_rpc, open_coordinator
from fl_chain.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from fl_chain.training.global_model import GlobalModel

#: The formats ``model export`` writes (fl_chain.training.export.EXPORT_FORMATS, without importing numpy here).
EXPORT_FORMAT_NAMES = ("onnx", "safetensors", "torchscript", "npz")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``model get`` and ``model export``."""
    model = commands.add_parser("model", help="global models")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    get = model_commands.add_parser("get", help="download the global model of a round to a .npy file")
    add_rpc(get)
    get.add_argument("--deployment", default="deployment.json")
    get.add_argument("--task", type=int, required=True)
    get.add_argument("--round", type=int, help="a finalized round (default: the latest)")
    get.add_argument("--out", required=True, help="output .npy file")
    get.add_argument("--ipfs-dir", help="IPFS repo for the downloading peer (default: a temporary one)")
    get.add_argument("--timeout", type=float, default=60.0)
    get.set_defaults(func=model_get_command)

    export = model_commands.add_parser(
        "export",
        help="write a global model as ONNX, safetensors, TorchScript or npz, checked against torch",
        description="The model comes from the chain and IPFS (--rpc, --task, --task-file), a simulate run "
        "folder (--run) or a .npy vector (--model, --task-file). The file, loaded back, must predict what "
        "torch predicts on the task's test split (logits within 1e-5, same accuracy).",
    )
    source = export.add_argument_group("source (one of: --rpc and --task, --run, --model)")
    source.add_argument("--rpc", help="JSON-RPC URL of the chain: fetch the round from the participants' IPFS peers")
    source.add_argument("--deployment", default="deployment.json")
    source.add_argument("--task", type=int, help="task id on chain")
    source.add_argument("--round", type=int, help="a finalized round (default: the latest)")
    source.add_argument("--ipfs-dir", help="IPFS repo for the downloading peer (default: a temporary one)")
    source.add_argument("--timeout", type=float, default=60.0)
    source.add_argument("--run", help="a flchain simulate run folder (its summary.json and final-model.npy)")
    source.add_argument("--model", help="a model vector .npy (e.g. from flchain model get)")
    source.add_argument("--task-file", help="the task's TOML file (with --rpc or --model)")
    export.add_argument(
        "--data", help="this site's data file or directory, for a csv or fashion_mnist task's test split"
    )
    export.add_argument("--format", choices=EXPORT_FORMAT_NAMES, help="default: from the suffix of --out")
    export.add_argument("--out", required=True, help="output file (.onnx, .safetensors, .pt, .npz)")
    export.set_defaults(func=model_export_command)


def model_get_command(args: argparse.Namespace) -> int:
    """Fetch and verify the global model of ``--round`` (default: the latest) and save it as .npy."""
    from fl_chain.exchange.download import download_global_model

    coordinator = open_coordinator(args)
    round_, path = download_global_model(
        coordinator, args.task, args.round, args.out, ipfs_dir=args.ipfs_dir, timeout=args.timeout
    )
    print(f"global model of task {args.task} round {round_} written to {path}")
    return 0


def model_export_command(args: argparse.Namespace) -> int:
    """Read the global model from its source, export it, and print the files and the check in one line each."""
    from fl_chain.training.export import format_of
    from fl_chain.training.global_model import export_global_model

    fmt = format_of(args.out, args.format)
    model = _read_source(args)
    result = export_global_model(model, fmt, args.out, data_path=args.data)
    meta = result.metadata
    origin = f"task {meta.task_id} round {meta.round}" if meta.task_id is not None else "model"
    accuracy = f", federation accuracy {meta.federation_accuracy:.4f}" if meta.federation_accuracy is not None else ""
    print(
        f"{origin} ({meta.architecture['name']}, {model.vector.size} parameters{accuracy}) exported as {fmt} "
        f"to {', '.join(str(f) for f in result.files)}"
    )
    print(result.check.line())
    return 0


def _read_source(args: argparse.Namespace) -> GlobalModel:
    """The global model of the one source the options name."""
    chosen = [name for name, given in (("--rpc", args.rpc), ("--run", args.run), ("--model", args.model)) if given]
    if len(chosen) != 1:
        raise ConfigError("model export needs exactly one source: --rpc with --task, --run, or --model")
    if args.run:
        from fl_chain.federation.run_folder import read_final_model

        if args.round is not None or args.task is not None or args.task_file:
            raise ConfigError("--run exports the run's final model; --task, --round and --task-file do not apply")
        return read_final_model(args.run)
    if not args.task_file:
        raise ConfigError(f"{chosen[0]} needs --task-file: the task's model architecture is built from it")
    from fl_chain.protocol.task import TaskSpec
    from fl_chain.training.global_model import GlobalModel

    spec = TaskSpec.from_toml(args.task_file)
    if args.model:
        return GlobalModel(spec, _load_vector(args.model), task_id=args.task, round=args.round)
    if args.task is None:
        raise ConfigError("--rpc needs --task: the task id on chain")
    from fl_chain.exchange.download import fetch_global_model

    coordinator = open_coordinator(args)
    config, _ = coordinator.get_task(args.task)
    round_, vector, cid = fetch_global_model(
        coordinator, args.task, args.round, ipfs_dir=args.ipfs_dir, timeout=args.timeout
    )
    return GlobalModel(spec, vector, task_id=args.task, round=round_, model_cid=cid, chain_config=config)


def _load_vector(path: str) -> np.ndarray:
    import numpy as np

    try:
        vector = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"model file {path} not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read model vector {path}: {exc}") from None
    if vector.ndim != 1 or vector.dtype.kind != "f":
        raise ConfigError(f"{path} is not a flat float model vector (shape {vector.shape}, dtype {vector.dtype})")
    return vector
