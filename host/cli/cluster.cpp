// MPI for the `cnncert` command (host/cli/cluster.hpp). Only the calling thread uses MPI.
#include "cli/cluster.hpp"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>
#include <thread>

#ifdef __linux__
#include <sched.h>
#endif

#ifdef CNNCERT_HAVE_MPI
#include <mpi.h>
#endif

namespace cnncert::cli {
namespace {

Cluster g_cluster;

/// The integer value of an environment variable, or -1 when it is unset or not a number.
int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return -1;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return *end || x < 0 || x > INT_MAX ? -1 : static_cast<int>(x);
}

/// Ranks of the launch as its environment tells (Open MPI's mpirun, PMI as Slurm and MPICH set it),
/// or -1 when it says nothing.
int launched_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}) {
    const int n = env_int(name);
    if (n >= 1) return n;
  }
  return std::getenv("PMIX_RANK") || std::getenv("PMI_RANK") ? 0 : -1;  // 0: a launch of unknown size
}

/// Processes the launcher started, as its environment says (srun's tasks whatever the MPI plugin).
int launched_count() {
  return std::max({1, launched_size(), env_int("SLURM_STEP_NUM_TASKS")});
}

}  // namespace

const Cluster& cluster() {
  return g_cluster;
}

int default_threads() {
  const int all = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  int mine = all;
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) mine = std::max(1, CPU_COUNT(&set));
#endif
  // Bound to its own cores (mpirun's default for few ranks): those; unbound: a share of the machine.
  return mine < all ? mine : std::max(1, all / std::max(1, g_cluster.local_size));
}

std::string refuse_unsplit_certify(bool shard_given) {
  if (shard_given || g_cluster.launched <= g_cluster.size) return "";
  return "this process is one of " + std::to_string(g_cluster.launched) + " launched by mpirun/srun, but " +
         (mpi_compiled()
              ? "MPI sees " + std::to_string(g_cluster.size) + " rank (srun without --mpi=pmix or pmi2?)"
              : std::string("this cnncert was built without MPI (apt-get install libopenmpi-dev, then rebuild)")) +
         ", so each would certify every image: give each process --shard K/N, or launch it as one process";
}

#ifdef CNNCERT_HAVE_MPI
bool mpi_compiled() {
  return true;
}

std::string cluster_start(int* argc, char*** argv) {
  g_cluster.launched = launched_count();
  if (launched_size() < 0) return "";  // a plain process: no MPI (and no MPI_Init cost)
  if (MPI_Init(argc, argv) != MPI_SUCCESS) return "MPI_Init failed";
  g_cluster.mpi = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_cluster.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_cluster.size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_cluster.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &g_cluster.local_rank);
  MPI_Comm_size(local, &g_cluster.local_size);
  MPI_Comm_free(&local);
  return "";
}

void cluster_finish() {
  if (g_cluster.mpi) MPI_Finalize();
  g_cluster.mpi = false;
}

std::string broadcast_text(const std::string& text) {
  if (!g_cluster.mpi || g_cluster.size == 1) return text;
  // Texts here are short messages; a longer one is cut (it only ever carries an error line).
  int len = g_cluster.rank == 0 ? static_cast<int>(std::min<size_t>(text.size(), 1 << 20)) : 0;
  MPI_Bcast(&len, 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string out =
      g_cluster.rank == 0 ? text.substr(0, static_cast<size_t>(len)) : std::string(static_cast<size_t>(len), '\0');
  MPI_Bcast(out.data(), len, MPI_CHAR, 0, MPI_COMM_WORLD);
  return out;
}

std::vector<std::string> gather_text(const std::string& mine) {
  if (!g_cluster.mpi || g_cluster.size == 1) return {mine};
  const bool root = g_cluster.rank == 0;
  // A text too long for MPI's int counts travels as an error text instead (rank 0 reports it).
  const std::string too_long =
      R"({"error": "this rank's results exceed 2 GiB and could not be sent to rank 0", "code": 2})";
  const std::string& send = mine.size() > static_cast<size_t>(INT_MAX) ? too_long : mine;
  int len = static_cast<int>(send.size());
  std::vector<int> lens(root ? static_cast<size_t>(g_cluster.size) : 0), displs(lens.size());
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  // Rank 0 tells the others how the texts travel: one Gatherv, or one message each when together
  // they exceed MPI's int displacements.
  long long total = 0;
  for (size_t r = 0; r < lens.size(); ++r) displs[r] = total <= INT_MAX ? static_cast<int>(total) : 0, total += lens[r];
  int one_by_one = root && total > INT_MAX ? 1 : 0;
  MPI_Bcast(&one_by_one, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (one_by_one) {
    if (!root) {
      MPI_Send(send.data(), len, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
      return {};
    }
    std::vector<std::string> out(lens.size());
    out[0] = send;
    for (int r = 1; r < g_cluster.size; ++r) {
      out[static_cast<size_t>(r)].resize(static_cast<size_t>(lens[static_cast<size_t>(r)]));
      MPI_Recv(out[static_cast<size_t>(r)].data(), lens[static_cast<size_t>(r)], MPI_CHAR, r, 1, MPI_COMM_WORLD,
               MPI_STATUS_IGNORE);
    }
    return out;
  }
  std::string all(root ? static_cast<size_t>(total) : 0, '\0');
  MPI_Gatherv(send.data(), len, MPI_CHAR, root ? all.data() : nullptr, lens.data(), displs.data(), MPI_CHAR, 0,
              MPI_COMM_WORLD);
  if (!root) return {};
  std::vector<std::string> out;
  for (size_t r = 0; r < lens.size(); ++r)
    out.push_back(all.substr(static_cast<size_t>(displs[r]), static_cast<size_t>(lens[r])));
  return out;
}
#else
bool mpi_compiled() {
  return false;
}

std::string cluster_start(int*, char***) {
  g_cluster.launched = launched_count();
  return "";
}

std::string broadcast_text(const std::string& text) {
  return text;
}

void cluster_finish() {}

std::vector<std::string> gather_text(const std::string& mine) {
  return {mine};
}
#endif

}  // namespace cnncert::cli
