// netns_probe: what one MPI rank sees of the emulated node it runs on (cluster/emulate_nodes.sh).
// Rank 0 prints one line per rank, in rank order, so the test can parse them:
//   rank=R size=N host=H ip=A[,B] local_rank=L local_size=S env_local_rank=L' env_local_size=S'
//   shared_ranks=r0,r1,... [env:NAME=VALUE ...]
// local_rank/local_size and shared_ranks come from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED),
// env_* from OMPI_COMM_WORLD_LOCAL_{RANK,SIZE}; ip lists the rank's non-loopback IPv4 addresses.
// Gathering the lines is itself traffic between the nodes.
//
// Usage: mpirun ... netns_probe [--env NAME]...
//        mpirun ... netns_probe --bandwidth MIB [--iters N]
//   --env NAME      also report the environment variable NAME (unset prints <unset>)
//   --bandwidth MIB measure instead: rank 0 streams N messages of MIB MiB to the last rank
//                   (one direction), then both exchange them at once (MPI_Sendrecv); prints MiB/s.
//                   For measurements only: nothing checks the numbers.
//   --iters N       messages per measurement (default 10), after one untimed warm-up message
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <mpi.h>
#include <netinet/in.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Args {
  std::vector<std::string> env_names;
  double bandwidth_mib = 0;  // 0: report mode
  int iters = 10;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument("missing value after " + k);
    const std::string v = argv[++i];
    if (k == "--env") {
      a.env_names.push_back(v);
    } else if (k == "--bandwidth") {
      a.bandwidth_mib = std::stod(v);
      if (!(a.bandwidth_mib > 0)) throw std::invalid_argument("--bandwidth must be > 0, got " + v);
    } else if (k == "--iters") {
      a.iters = std::stoi(v);
      if (a.iters < 1) throw std::invalid_argument("--iters must be >= 1, got " + v);
    } else {
      throw std::invalid_argument("unknown option " + k +
                                  " (usage: netns_probe [--env NAME]... | --bandwidth MIB "
                                  "[--iters N])");
    }
  }
  return a;
}

std::string ipv4_addresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "?";
  std::string out;
  for (ifaddrs* p = list; p; p = p->ifa_next) {
    if (!p->ifa_addr || p->ifa_addr->sa_family != AF_INET) continue;
    char buf[INET_ADDRSTRLEN];
    const auto* sin = reinterpret_cast<const sockaddr_in*>(p->ifa_addr);
    if (!inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf)) continue;
    if (std::string(buf).rfind("127.", 0) == 0) continue;
    out += (out.empty() ? "" : ",") + std::string(buf);
  }
  freeifaddrs(list);
  return out.empty() ? "none" : out;
}

std::string env_or_unset(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "<unset>";
}

std::string describe(const Args& a, int rank, int size) {
  MPI_Comm shared;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &shared);
  int local_rank = 0, local_size = 0;
  MPI_Comm_rank(shared, &local_rank);
  MPI_Comm_size(shared, &local_size);
  std::vector<int> members(local_size);
  MPI_Allgather(&rank, 1, MPI_INT, members.data(), 1, MPI_INT, shared);
  MPI_Comm_free(&shared);

  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::string line = "rank=" + std::to_string(rank) + " size=" + std::to_string(size) +
                     " host=" + host + " ip=" + ipv4_addresses() +
                     " local_rank=" + std::to_string(local_rank) +
                     " local_size=" + std::to_string(local_size) +
                     " env_local_rank=" + env_or_unset("OMPI_COMM_WORLD_LOCAL_RANK") +
                     " env_local_size=" + env_or_unset("OMPI_COMM_WORLD_LOCAL_SIZE") +
                     " shared_ranks=";
  for (int i = 0; i < local_size; ++i) line += (i ? "," : "") + std::to_string(members[i]);
  for (const auto& n : a.env_names) line += " env:" + n + "=" + env_or_unset(n.c_str());
  return line;
}

// Every rank's line to rank 0, printed in rank order (no interleaved output).
void print_in_rank_order(const std::string& line, int rank, int size) {
  int len = static_cast<int>(line.size());
  std::vector<int> lens(size), offsets(size);
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  int total = 0;
  for (int i = 0; rank == 0 && i < size; ++i) offsets[i] = total, total += lens[i];
  std::vector<char> all(rank == 0 ? total : 0);
  MPI_Gatherv(line.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR, 0,
              MPI_COMM_WORLD);
  for (int i = 0; rank == 0 && i < size; ++i) {
    std::printf("%.*s\n", lens[i], all.data() + offsets[i]);
  }
  std::fflush(stdout);
}

// Returns the number of ranks that received wrong bytes (0 when all is well).
int bandwidth(const Args& a, int rank, int size) {
  if (size < 2) throw std::invalid_argument("--bandwidth needs at least 2 ranks");
  const size_t bytes = static_cast<size_t>(a.bandwidth_mib * 1024 * 1024);
  if (bytes > static_cast<size_t>(INT_MAX)) throw std::invalid_argument("--bandwidth too large");
  const int n = static_cast<int>(bytes), peer = rank == 0 ? size - 1 : 0;
  std::vector<char> out(bytes, static_cast<char>(rank + 1)), in(bytes);
  auto ack = [&](int from) {  // the receiver tells the sender it has everything
    char b = 0;
    if (rank == from) MPI_Send(&b, 1, MPI_CHAR, peer, 1, MPI_COMM_WORLD);
    else MPI_Recv(&b, 1, MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  };
  double one_way = 0, both = 0;
  int bad = 0;
  if (rank == 0 || rank == size - 1) {
    // Rank 0 sends, the last rank receives; one untimed message first sets up the connection.
    for (int it = 0; it <= a.iters; ++it) {
      if (it == 1) one_way = MPI_Wtime();
      if (rank == 0) MPI_Send(out.data(), n, MPI_CHAR, peer, 0, MPI_COMM_WORLD);
      else MPI_Recv(in.data(), n, MPI_CHAR, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (it == 0) ack(size - 1);
    }
    ack(size - 1);
    one_way = MPI_Wtime() - one_way;
    both = MPI_Wtime();
    for (int it = 0; it < a.iters; ++it) {
      MPI_Sendrecv(out.data(), n, MPI_CHAR, peer, 2, in.data(), n, MPI_CHAR, peer, 2,
                   MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    both = MPI_Wtime() - both;
    bad = in[0] != static_cast<char>(peer + 1) || in[n - 1] != static_cast<char>(peer + 1);
  }
  int bad_ranks = 0;
  MPI_Allreduce(&bad, &bad_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) {
    const double mib = a.bandwidth_mib * a.iters, gbit = 1024.0 * 1024 * 8 / 1e9;
    std::printf("bandwidth rank 0 <-> rank %d, %g MiB x %d: one-way %.1f MiB/s (%.3f Gbit/s), "
                "each direction of a simultaneous exchange %.1f MiB/s (%.3f Gbit/s), "
                "wrong_ranks=%d\n",
                size - 1, a.bandwidth_mib, a.iters, mib / one_way, mib * gbit / one_way,
                mib / both, mib * gbit / both, bad_ranks);
    std::fflush(stdout);
  }
  return bad_ranks;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  try {
    const Args a = parse(argc, argv);
    int status = 0;
    if (a.bandwidth_mib > 0) {
      status = bandwidth(a, rank, size) ? 1 : 0;
    } else {
      print_in_rank_order(describe(a, rank, size), rank, size);
    }
    MPI_Finalize();
    return status;
  } catch (const std::exception& e) {
    // Every rank parses the same arguments, so argument errors end every rank the same way.
    if (rank == 0) std::fprintf(stderr, "netns_probe: error: %s\n", e.what());
    MPI_Finalize();
    return 2;
  }
}
