"""Reads `perf script` output (sched:sched_wakeup, sched:sched_switch and cpu-clock samples with
call chains, all CPUs) on stdin. For each wake-up of a page-serving thread (php-fpm, nginx, wrk)
that waited more than 100 µs until it ran, it counts the task its target CPU was running when the
wake-up came; for those where that was an evlog flush thread, it counts the flush thread's top
frame (and first user-space frame) in its cpu-clock samples on that CPU while the page's thread
waited. Prints Markdown. Used by wakeups.sh."""
import collections
import re
import sys

PAGE = ("php-fpm8.2", "php-fpm", "nginx", "wrk")
WAITED = 100e-6
LINE = re.compile(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(?:\d+\s+)?(\S+):\s(.*)")
WAKEUP = re.compile(r"comm=(.+?) pid=(\d+) prio=\d+ target_cpu=(\d+)")
SWITCH = re.compile(r"next_comm=(.+?) next_pid=(\d+)")


def symbol(frame):
    name = frame.split(None, 1)[1] if " " in frame else frame
    return re.sub(r"\+0x[0-9a-f]+", "", name.split(" (")[0])[:80]


def main():
    running, waking, windows, samples = {}, {}, [], []
    woken = waited = 0
    on_target = collections.Counter()
    lines = sys.stdin.read().split("\n")
    i = 0
    while i < len(lines):
        m = LINE.match(lines[i])
        i += 1
        if not m:
            continue
        comm, cpu, t, event, rest = m.group(1), int(m.group(3)), float(m.group(4)), m.group(5), m.group(6)
        if event == "cpu-clock":
            stack = []
            while i < len(lines) and lines[i].strip():
                stack.append(lines[i].strip())
                i += 1
            samples.append((t, cpu, comm, stack))
        elif event == "sched:sched_wakeup":
            w = WAKEUP.search(rest)
            if w and w.group(1) in PAGE:
                target = int(w.group(3))
                waking[w.group(2)] = (t, target, running.get(target, "?"))
        elif event == "sched:sched_switch":
            s = SWITCH.search(rest)
            if not s:
                continue
            running[cpu] = s.group(1)
            if s.group(2) in waking:
                t0, target, was = waking.pop(s.group(2))
                woken += 1
                if t - t0 > WAITED:
                    waited += 1
                    on_target[was] += 1
                    if was.startswith("evlog"):
                        windows.append((t0, t, target))
    print()
    print(f"{woken} wake-ups of page threads; {waited} waited > 100 µs for their CPU. "
          "What that CPU was running when the wake-up came (`swapper` = idle: the wait is the "
          "virtual CPU's own wake-up):")
    print()
    print("| task on the target CPU | wake-ups that waited > 100 µs |")
    print("|---|---|")
    for name, n in on_target.most_common(10):
        print(f"| {name} | {n} |")
    top, user = collections.Counter(), collections.Counter()
    for t0, t1, target in windows:
        for t, cpu, comm, stack in samples:
            if cpu == target and t0 <= t <= t1 and comm.startswith("evlog") and stack:
                top[symbol(stack[0])] += 1
                first_user = next((f for f in stack if "[kernel" not in f), None)
                if first_user:
                    user[symbol(first_user)] += 1
    if windows:
        print()
        print(f"The flush thread while a page's thread waited for its CPU ({len(windows)} waits; "
              "cpu-clock samples at 20 kHz): top frame / first user-space frame")
        print()
        print("| top frame | samples | first user-space frame | samples |")
        print("|---|---|---|---|")
        for (a, na), (b, nb) in zip(top.most_common(8), user.most_common(8)):
            print(f"| {a} | {na} | {b} | {nb} |")


main()
