/* The machine's price of waking a thread: a one-byte pipe ping-pong between two threads, on
 * two CPUs (each wake-up crosses to the other CPU, idle meanwhile: in a VM, an interrupt to a
 * halted virtual CPU) and on one CPU. Prints the round trip's p50 / p90 / p99, µs. Used by
 * wakeups.sh; build: gcc -O2 -pthread. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { ROUNDS = 5000 };
static int ping[2], pong[2];
static int peer_cpu;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *echo(void *unused) {
  (void)unused;
  pin(peer_cpu);
  char c;
  while (read(ping[0], &c, 1) == 1 && write(pong[1], &c, 1) == 1) {
  }
  return NULL;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void run(int cpu, const char *name) {
  static double took[ROUNDS];
  pthread_t t;
  peer_cpu = cpu;
  if (pipe(ping) || pipe(pong) || pthread_create(&t, NULL, echo, NULL)) {
    perror("setup");
    exit(1);
  }
  pin(0);
  char c = 'x';
  for (int i = 0; i < ROUNDS; i++) {
    double start = now_us();
    if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) {
      perror("ping");
      exit(1);
    }
    took[i] = now_us() - start;
    usleep(100); /* the peer's CPU goes idle, as between a page's steps */
  }
  close(ping[1]);
  pthread_join(t, NULL);
  close(ping[0]), close(pong[0]), close(pong[1]);
  qsort(took, ROUNDS, sizeof took[0], by_value);
  printf("pipe round trip, %s: p50 %.1f  p90 %.1f  p99 %.1f us\n", name, took[ROUNDS / 2],
         took[ROUNDS * 9 / 10], took[ROUNDS * 99 / 100]);
}

int main(void) {
  if (sysconf(_SC_NPROCESSORS_ONLN) > 1) run(1, "two CPUs (CPU 0 and 1)");
  run(0, "one CPU");
  return 0;
}
