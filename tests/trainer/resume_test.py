#!/usr/bin/env python3
"""Checkpoint/resume end to end under mpirun (issue 5's tests), on the layout-test model:

  kill9      kill -9 the whole job at a random step; --resume auto: every logged loss and the final
             parameters equal an uninterrupted run's bit for bit
  crash      the job dies inside a checkpoint write (created, written, closed, renamed); resume
             falls back to the previous complete checkpoint and ends bit-identical
  signal     SIGUSR1 to mpirun: every rank finishes its step, saves, exits 0; resume is identical
  async      checkpoint.async writes the same bytes as a synchronous save
  reshard    a (pp, dp, ep) = (2,2,2) checkpoint resumed under (1,1,1), (1,4,4), (4,2,1), (2,4,2)
             and (2,2,2) with DualPipe (mirrored stages): the next steps' losses within 1e-5 of the
             uninterrupted run; the DualPipe run's own checkpoint resumed under (1,1,1) likewise
  bf16 state optimizer.state_dtype=bf16: the checkpoint's moments are widened bf16 values;
             resumed at step 4 under the same layout, bit for bit
  v3 tie     MLA + MTP at (2,2,2) 1f1b (the head's stage keeps a tied copy of the embedding, which
             it reads but never writes): resumed at step 4 under the same layout bit for bit, and
             under (1,1,1) within 1e-5
  unlogged   killed after committing the last checkpoint but before logging its step (a race the
             kill9 case hit under load): resume restores the step's metrics line from the checkpoint
  damage     one flipped byte: `tessera checkpoint verify` names the dataset, --resume auto falls
             back to the previous checkpoint and says so
"""
import argparse
import filecmp
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np

STEPS = 8
BASE = (2, 2, 2, 2)  # pp, dp, ep, micro_batches


def layout_sets(pp, dp, ep, mb, schedule=None):
    sets = [f"parallel.pp={pp}", f"parallel.dp={dp}", f"parallel.ep={ep}", f"parallel.micro_batches={mb}"]
    return sets + ([f"parallel.schedule={schedule}"] if schedule else [])


def launcher_failed(output):
    return "OPAL ERROR: Unreachable" in output or "error occurred in MPI_Init" in output


def launch(cmd, env=None, timeout=300):
    """Runs an mpiexec command line to its end. Open MPI's mpiexec sometimes never reaps ranks that
    died together (seen in CI under load: zombie ranks, mpiexec waiting); once no rank has been
    alive for 10 s, mpiexec is killed and the run reported as failed (-9)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    out = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    deadline, orphaned_since, seen_rank = time.time() + timeout, None, False
    while proc.poll() is None:
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            sys.exit(f"FAIL: {' '.join(cmd)} still running after {timeout} s")
        if any_rank_alive(proc.pid):
            orphaned_since, seen_rank = None, True
        elif seen_rank and orphaned_since is None:
            orphaned_since = time.time()
        elif seen_rank and time.time() - orphaned_since > 10:
            print("note: mpiexec did not exit 10 s after its last rank died; killing it")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.2)
    reader.join(timeout=10)
    return subprocess.CompletedProcess(cmd, proc.returncode, out[0] if out else "")


class Runner:
    def __init__(self, args, data):
        self.args, self.data = args, data

    def cmd(self, run_dir, layout=BASE, extra=(), resume=None):
        sets = [f"data.path={self.data}", f"run.dir={run_dir}", f"train.steps={STEPS}",
                "checkpoint.every_steps=2", "checkpoint.keep_last=3", "train.eval_every=0"]
        sets += layout_sets(*layout) + list(extra)
        cmd = [self.args.tessera, "train", self.args.recipe]
        for s in sets:
            cmd += ["--set", s]
        if resume:
            cmd += ["--resume", resume]
        procs = layout[0] * layout[1]
        return [self.args.mpirun, "--oversubscribe", "-np", str(procs),
                "--mca", "btl_vader_single_copy_mechanism", "none"] + cmd

    def run(self, run_dir, layout=BASE, extra=(), resume=None, env=None, expect_ok=True):
        cmd = self.cmd(run_dir, layout, extra, resume)
        proc = launch(cmd, env)
        if proc.returncode != 0 and launcher_failed(proc.stdout):
            # Open MPI's PMIx sometimes fails a rank's MPI_Init right after a job whose ranks
            # were killed ("OPAL ERROR: Unreachable"): the launch failed, not tessera. Once more.
            print(f"note: mpiexec failed to start the ranks (MPI_Init); launching again: {run_dir}")
            proc = launch(cmd, env)
        if expect_ok and proc.returncode != 0:
            print(proc.stdout[-3000:])
            sys.exit(f"FAIL: {' '.join(cmd)} exited {proc.returncode}")
        return proc

    def run_crash(self, run_dir, env):
        """A run whose every rank kills itself (the caller checks that the job died)."""
        return launch(self.cmd(run_dir), env)

    def start(self, run_dir, layout=BASE, extra=(), resume=None):
        return subprocess.Popen(self.cmd(run_dir, layout, extra, resume), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)


def any_rank_alive(session):
    """Whether a process of `session` other than its leader (mpiexec) is alive (not a zombie)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == session:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            return True
    return False


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def losses(run_dir):
    return [(m["step"], m["loss"]) for m in metrics(run_dir)]


def params(step_dir):
    out = {}
    with h5py.File(os.path.join(step_dir, "model.h5"), "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def final_step_dir(run_dir):
    return os.path.join(run_dir, "checkpoints", f"step-{STEPS:08d}")


class Checks:
    def __init__(self):
        self.problems = []

    def expect(self, ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            self.problems.append(what)

    def identical_run(self, name, run_dir, ref_dir):
        got, want = losses(run_dir), losses(ref_dir)
        self.expect(got == want, f"{name}: logged losses equal the uninterrupted run's exactly "
                                 f"({len(got)} steps)" + ("" if got == want else f": {got} vs {want}"))
        a, b = params(final_step_dir(run_dir)), params(final_step_dir(ref_dir))
        same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        self.expect(same, f"{name}: final parameters and moments equal bit for bit ({len(a)} tensors)")
        self.expect(os.path.isfile(os.path.join(run_dir, "DONE")), f"{name}: DONE written")


def wait_for_steps(proc, run_dir, steps, timeout=120):
    path = os.path.join(run_dir, "metrics.jsonl")
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        if os.path.isfile(path):
            with open(path) as f:
                if sum(1 for _ in f) >= steps:
                    return True
        time.sleep(0.01)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print(f"resume test, random seed {args.seed}", flush=True)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    data = os.path.join(args.work, "markov")
    subprocess.run([args.tessera, "prepare", "synthetic", "--vocab", "64", "--order", "1", "--tokens",
                    "200000", "--seed", "3", "--out", data, "--quiet"], check=True)
    r, c = Runner(args, data), Checks()
    w = lambda name: os.path.join(args.work, name)

    ref = w("reference")
    r.run(ref)

    # kill -9 of the whole job at a random step, then --resume auto.
    kill_at = rng.randint(3, STEPS - 1)
    proc = r.start(w("kill9"))
    reached = wait_for_steps(proc, w("kill9"), kill_at)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    c.expect(reached, f"kill9: job reached step {kill_at} before the kill")
    r.run(w("kill9"), resume="auto")
    c.identical_run(f"kill9 (killed after step {kill_at})", w("kill9"), ref)

    # A crash inside the step-4 checkpoint write at each point of it.
    for point in ("created", "written", "closed", "renamed"):
        run_dir = w(f"crash_{point}")
        env = dict(os.environ, TESSERA_CHECKPOINT_CRASH=f"{point}@4")
        proc = r.run_crash(run_dir, env=env)
        c.expect(proc.returncode != 0, f"crash at '{point}': the job died ({proc.returncode})")
        ckpts = os.path.join(run_dir, "checkpoints")
        with open(os.path.join(ckpts, "latest")) as f:
            latest = f.read().strip()
        c.expect(latest == "step-00000002", f"crash at '{point}': latest still names step-00000002 ({latest})")
        proc = r.run(run_dir, resume="auto")
        resumed_from = [l for l in proc.stdout.splitlines() if "resumed from" in l]
        c.expect(bool(resumed_from) and ("step-00000002" in resumed_from[0] or
                                         (point == "renamed" and "step-00000004" in resumed_from[0])),
                 f"crash at '{point}': resumed from a complete checkpoint: {resumed_from}")
        c.identical_run(f"crash at '{point}'", run_dir, ref)

    # SIGUSR1: finish the step, save, exit 0; then resume.
    proc = r.start(w("signal"))
    wait_for_steps(proc, w("signal"), 3)
    os.killpg(proc.pid, signal.SIGUSR1)  # mpirun forwards SIGUSR1 to every rank
    out, _ = proc.communicate(timeout=120)
    stop_lines = [l for l in out.splitlines() if "stopping after step" in l]
    c.expect(proc.returncode == 0 and bool(stop_lines),
             f"signal: exit {proc.returncode}, {stop_lines[:1]}")
    c.expect(not os.path.exists(os.path.join(w("signal"), "DONE")), "signal: no DONE after an early stop")
    r.run(w("signal"), resume="auto")
    c.identical_run("signal", w("signal"), ref)

    # Async saving writes the same bytes.
    r.run(w("async"), extra=["checkpoint.async=true"])
    same = filecmp.cmp(os.path.join(final_step_dir(w("async")), "model.h5"),
                       os.path.join(final_step_dir(ref), "model.h5"), shallow=False)
    c.expect(same, "async: model.h5 of step 8 is byte-identical to the synchronous save")
    stalls = [m["checkpoint_stall_s"] for m in metrics(w("async")) if "checkpoint_stall_s" in m]
    c.expect(len(stalls) == STEPS // 2, f"async: checkpoint_stall_s reported for {len(stalls)} saves")

    # Killed between committing step 8's checkpoint and logging step 8: the line comes back.
    run_dir = w("unlogged")
    shutil.copytree(ref, run_dir)
    os.remove(os.path.join(run_dir, "DONE"))
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = f.readlines()
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        f.writelines(lines[:-1])
    r.run(run_dir, resume="auto")
    c.expect(losses(run_dir) == losses(ref),
             f"unlogged: step {STEPS}'s metrics line restored from its checkpoint on resume")

    # Reshard: resume the step-4 checkpoint under other layouts.
    want = dict(losses(ref))
    for layout in ((1, 1, 1, 1), (1, 4, 4, 1), (4, 2, 1, 4), (2, 4, 2, 2), (2, 2, 2, 4, "dualpipe")):
        run_dir = w("reshard_" + "_".join(map(str, layout)))
        os.makedirs(os.path.join(run_dir, "checkpoints"))
        shutil.copytree(os.path.join(ref, "checkpoints", "step-00000004"),
                        os.path.join(run_dir, "checkpoints", "step-00000004"))
        with open(os.path.join(run_dir, "checkpoints", "latest"), "w") as f:
            f.write("step-00000004\n")
        r.run(run_dir, layout=layout, resume="auto")
        got = losses(run_dir)
        worst = max(abs(l - want[s]) / abs(want[s]) for s, l in got if s > 4)
        c.expect([s for s, _ in got] == list(range(5, STEPS + 1)) and worst <= 1e-5,
                 f"reshard (2,2,2) -> {layout[:3]}{' ' + layout[4] if len(layout) > 4 else ''}: steps 5..{STEPS} within {worst:.1e} of the (2,2,2) run")

    # What DualPipe's mirrored pairs wrote (each tensor once, over the pair's shards) resumes elsewhere.
    dual_step6 = os.path.join(w("reshard_2_2_2_4_dualpipe"), "checkpoints", "step-00000006")
    run_dir = w("reshard_dualpipe_to_1_1_1")
    os.makedirs(os.path.join(run_dir, "checkpoints"))
    shutil.copytree(dual_step6, os.path.join(run_dir, "checkpoints", "step-00000006"))
    with open(os.path.join(run_dir, "checkpoints", "latest"), "w") as f:
        f.write("step-00000006\n")
    r.run(run_dir, layout=(1, 1, 1, 1), resume="auto")
    got = losses(run_dir)
    worst = max(abs(l - want[s]) / abs(want[s]) for s, l in got if s > 6)
    c.expect([s for s, _ in got] == list(range(7, STEPS + 1)) and worst <= 1e-5,
             f"reshard dualpipe (2,2,2) step 6 -> (1,1,1): steps 7..{STEPS} within {worst:.1e} of the (2,2,2) run")

    # MTP's tied embedding copy: written once (by the first stage), read back by both holders.
    v3 = ["model.attention=mla", "model.q_lora_rank=12", "model.kv_lora_rank=16",
          "model.qk_nope_head_dim=8", "model.qk_rope_head_dim=4", "model.v_head_dim=6",
          "model.mtp_depth=1"]
    v3_ref = w("v3_reference")
    r.run(v3_ref, extra=v3)
    v3_want = dict(losses(v3_ref))
    for layout in (BASE, (1, 1, 1, 1)):
        run_dir = w("v3_resume_" + "_".join(map(str, layout)))
        os.makedirs(os.path.join(run_dir, "checkpoints"))
        shutil.copytree(os.path.join(v3_ref, "checkpoints", "step-00000004"),
                        os.path.join(run_dir, "checkpoints", "step-00000004"))
        with open(os.path.join(run_dir, "checkpoints", "latest"), "w") as f:
            f.write("step-00000004\n")
        r.run(run_dir, layout=layout, extra=v3, resume="auto")
        got = losses(run_dir)
        if layout == BASE:
            c.expect([s for s, _ in got] == list(range(5, STEPS + 1)) and
                     all(l == v3_want[s] for s, l in got),
                     f"v3 tie: resumed under (2,2,2) at step 4, steps 5..{STEPS} bit-identical")
        else:
            worst = max(abs(l - v3_want[s]) / abs(v3_want[s]) for s, l in got if s > 4)
            c.expect([s for s, _ in got] == list(range(5, STEPS + 1)) and worst <= 1e-5,
                     f"v3 tie: (2,2,2) step 4 -> (1,1,1): steps 5..{STEPS} within {worst:.1e}")

    # bf16 optimizer state: the checkpoint holds the moments widened to float32 (low 16 bits zero);
    # resumed on the same layout they round back to the same bits: the run continues bit for bit.
    bf16 = ["optimizer.state_dtype=bf16"]
    bf16_ref = w("bf16_state_reference")
    r.run(bf16_ref, extra=bf16)
    moments = {k: v for k, v in params(final_step_dir(bf16_ref)).items() if k.startswith("optimizer/")}
    c.expect(bool(moments) and all(not (v.view(np.uint32) & 0xFFFF).any() for v in moments.values()),
             f"bf16 state: the checkpoint's {len(moments)} moment tensors are widened bf16 values")
    c.expect(losses(bf16_ref) != losses(ref), "bf16 state: the losses differ from the fp32-state run's")
    run_dir = w("bf16_state_resume")
    os.makedirs(os.path.join(run_dir, "checkpoints"))
    shutil.copytree(os.path.join(bf16_ref, "checkpoints", "step-00000004"),
                    os.path.join(run_dir, "checkpoints", "step-00000004"))
    with open(os.path.join(run_dir, "checkpoints", "latest"), "w") as f:
        f.write("step-00000004\n")
    r.run(run_dir, extra=bf16, resume="auto")
    bf16_want = dict(losses(bf16_ref))
    got = losses(run_dir)
    c.expect([s for s, _ in got] == list(range(5, STEPS + 1)) and all(l == bf16_want[s] for s, l in got),
             f"bf16 state: resumed under (2,2,2) at step 4, steps 5..{STEPS} bit-identical")
    a, b = params(final_step_dir(run_dir)), params(final_step_dir(bf16_ref))
    c.expect(a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a),
             f"bf16 state: final parameters and moments equal bit for bit ({len(a)} tensors)")

    # Damage: flip one byte of a dataset in the newest checkpoint.
    run_dir = w("damage")
    shutil.copytree(ref, run_dir)
    victim = "layers.3.moe.experts.w1"
    with h5py.File(os.path.join(final_step_dir(run_dir), "model.h5"), "r") as f:
        offset = f[victim].id.get_offset()
    with open(os.path.join(final_step_dir(run_dir), "model.h5"), "r+b") as f:
        f.seek(offset + 11)
        b = f.read(1)
        f.seek(offset + 11)
        f.write(bytes([b[0] ^ 0x10]))
    proc = subprocess.run([args.tessera, "checkpoint", "verify", final_step_dir(run_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    c.expect(proc.returncode != 0 and victim in proc.stdout,
             f"damage: verify exits {proc.returncode} naming {victim}: {proc.stdout.strip()[:200]}")
    proc = r.run(run_dir, extra=[f"train.steps={STEPS + 2}"], resume="auto")
    fell_back = [l for l in proc.stdout.splitlines() if "is damaged" in l]
    c.expect(bool(fell_back) and victim in fell_back[0] and "step-00000006" in fell_back[0],
             f"damage: --resume auto falls back to step 6 and says why: {fell_back[:1]}")

    print("resume test:", "PASS" if not c.problems else f"FAIL ({len(c.problems)} problems)")
    sys.exit(1 if c.problems else 0)


if __name__ == "__main__":
    main()
