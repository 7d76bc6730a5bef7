"""The kvmlab command line: ``python -m kvmlab run GUEST.S`` (also installed as ``kvmlab``).

    python -m kvmlab run guests/hello.S                 # console text, then an exit summary
    python -m kvmlab run guests/hello.S --json          # one JSON object on stdout
    python -m kvmlab run guests/pio.S --trace           # every exit on stderr as it happens

Options: ``--backend sim|hw|auto`` (default: ``$KVMLAB_BACKEND``, else sim, as
``kvmlab.open()``; auto: /dev/kvm if usable, else the simulator), ``--mode real|protected|long`` (overrides the guest's
header), ``--max-exits N`` (default 100000), ``--timeout S`` (default 10).

Exit status: the guest's debug-exit code (0 = success; 255 if larger); 0 if the guest
stopped some other way (HLT, SHUTDOWN, INTERNAL_ERROR, ...: see the summary or
``stop_reason``); 124 if it did not stop within --timeout / --max-exits; 2 for bad
input (missing file, assembly or header error); 1 if the backend cannot run it (or
fails inside); 130 on Ctrl-C.  Errors are one line on stderr, never a traceback
(``KVMLAB_TRACEBACK=1`` shows it for an internal error).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_BAD_INPUT = 2
EXIT_BACKEND = 1
EXIT_NO_STOP = 124
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message):          # one line, status 2, like every other bad input
        self.exit(EXIT_BAD_INPUT, f"kvmlab: {message} (see: python -m kvmlab run --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m kvmlab", description="Run kvmlab guests on the simulated or the real KVM.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    r = sub.add_parser("run", help="assemble a guest (.S) and run it in a Machine",
                       description="Assemble GUEST.S in-process and run it in a kvmlab.vmm.Machine; print "
                                   "its console output and an exit summary.")
    r.add_argument("guest", metavar="GUEST.S", help="guest source file (GNU as, .intel_syntax noprefix)")
    r.add_argument("--backend", choices=("sim", "hw", "auto"), default=None,
                   help="KVM backend (default: $KVMLAB_BACKEND, else sim, as kvmlab.open())")
    r.add_argument("--mode", choices=("real", "protected", "long"), default=None,
                   help="CPU mode to start in (default: the guest's '# kvmlab: mode=' header)")
    r.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    r.add_argument("--max-exits", type=int, default=100_000, metavar="N", help="stop after N exits (default 100000)")
    r.add_argument("--timeout", type=float, default=10.0, metavar="S", help="stop after S seconds (default 10)")
    r.add_argument("--trace", action="store_true", help="print every exit on stderr as it happens")
    return p


def _err(msg: str) -> None:
    sys.stderr.write("kvmlab: " + " ".join(str(msg).split()) + "\n")
    sys.stderr.flush()


def main(argv=None) -> int:
    """Entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command != "run":
        _err("give a command: run GUEST.S (see: python -m kvmlab run --help)")
        return EXIT_BAD_INPUT
    try:
        return _run(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - a bug below us still gets one line, not a traceback
        if os.environ.get("KVMLAB_TRACEBACK"):
            raise
        where = ""
        tb = e.__traceback__
        while tb is not None:
            where = f" (at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno})"
            tb = tb.tb_next
        _err(f"internal error: {type(e).__name__}: {e}{where}; set KVMLAB_TRACEBACK=1 to see the traceback")
        return EXIT_BACKEND


def _run(args) -> int:
    from . import asm
    from .errors import BackendUnavailable, KvmError
    from .vmm import GuestError, Machine

    if args.max_exits < 1:
        _err(f"--max-exits must be at least 1, got {args.max_exits}")
        return EXIT_BAD_INPUT
    if not args.timeout > 0:
        _err(f"--timeout must be positive, got {args.timeout}")
        return EXIT_BAD_INPUT
    path = args.guest
    if not os.path.isfile(path):
        _err(f"{path}: no such guest file")
        return EXIT_BAD_INPUT
    backend = args.backend or os.environ.get("KVMLAB_BACKEND") or "sim"
    echo = None if (args.json or args.trace) else _stdout_write   # with --trace: console after the run
    try:
        machine = Machine.from_file(path, backend=backend, mode=args.mode, echo=echo)
    except asm.AsmError as e:
        _err(f"assembly error: {str(e).splitlines()[0]}")
        return EXIT_BAD_INPUT
    except (GuestError, UnicodeDecodeError) as e:
        _err(f"{path}: {e}")
        return EXIT_BAD_INPUT
    except BackendUnavailable as e:
        _err(f"backend {backend!r} is not available: {e}")
        return EXIT_BACKEND
    except KvmError as e:
        _err(f"could not build the VM: {e}")
        return EXIT_BACKEND
    except ValueError as e:
        _err(f"{path}: {e}")
        return EXIT_BAD_INPUT
    except OSError as e:
        _err(f"{path}: {e.strerror or e}")
        return EXIT_BAD_INPUT

    trace = _tracer(machine) if args.trace else None
    with machine:
        try:
            result = machine.run(max_exits=args.max_exits, timeout=args.timeout, trace=trace)
        except KvmError as e:
            _err(f"KVM_RUN failed: {e}")
            return EXIT_BACKEND
    if args.json:
        out = {"guest": os.path.basename(path), "mode": machine.mode}
        out.update(result.to_dict())
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        if args.trace:
            sys.stdout.write(result.console)
        if result.console and not result.console.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.write(f"--- kvmlab: {os.path.basename(path)} ({machine.mode} mode) on {result.backend}\n")
        sys.stdout.write(f"--- {result.summary()}\n")
    sys.stdout.flush()
    if result.stop_reason in ("timeout", "max_exits"):
        what = f"{args.timeout:g} s (--timeout)" if result.stop_reason == "timeout" else f"{args.max_exits} exits (--max-exits)"
        _err(f"the guest did not stop within {what}; last exit: {result.exits[-1]['reason'] if result.exits else 'none'}")
        return EXIT_NO_STOP
    if result.status is not None:
        return result.status if 0 <= result.status <= 255 else 255
    return 0


def _stdout_write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _tracer(machine):
    n = [0]

    def trace(exit, action):
        n[0] += 1
        try:
            rip = f"rip={machine.vcpu.get_regs().rip:#x}"
        except Exception:  # noqa: BLE001 - tracing must never break a run
            rip = ""
        dev = f" -> {action.device}" if action.device else ""
        reply = f" reply={action.complete.hex()}" if action.complete is not None else ""
        stop = f" [stop: {action.reason}]" if action.stop else ""
        sys.stderr.write(f"  #{n[0]:<5} {exit!r}{dev}{reply} {rip}{stop}\n")

    return trace


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
