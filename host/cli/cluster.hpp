#pragma once
// The processes of one `cnncert` run (internal to the command): a single process, or the ranks of
// an MPI launch (mpirun, srun). Under MPI every rank certifies its shard of the images and rank 0
// gathers the results. A build without MPI refuses to run as several processes, rather than have
// every process certify every image and write the same files.
#include <string>
#include <vector>

namespace cnncert::cli {

struct Cluster {
  int rank = 0, size = 1;              ///< this process's rank and the number of ranks
  int local_rank = 0, local_size = 1;  ///< the same among the ranks on this machine
  bool mpi = false;                    ///< MPI was started (launched by mpirun/srun in an MPI build)
  /// Processes the launcher says it started (mpirun's or srun's environment; 1 when it says
  /// nothing). More than `size` means the processes do not see each other: a build without MPI, or
  /// srun without an MPI plugin.
  int launched = 1;
};

/// This process's place in the run (the defaults until cluster_start()).
const Cluster& cluster();

/// CPU threads for this process when the user gave none: the cores it may run on (its affinity
/// mask: mpirun binds each rank to cores) shared with the other ranks on this machine.
int default_threads();

/// True when this build can run under MPI.
bool mpi_compiled();

/// Starts MPI when the build has it and the environment shows an MPI launch. Returns an error
/// text (empty on success).
std::string cluster_start(int* argc, char*** argv);

/// Empty when a `certify` (given --shard or not) may run here; else why not: this process is one of
/// several that cannot see each other (cluster().launched > size), so without --shard each would
/// certify every image and write the same outputs.
std::string refuse_unsplit_certify(bool shard_given);

/// Rank 0's `text` on every rank (a collective call). Without MPI: `text`.
std::string broadcast_text(const std::string& text);

/// Ends MPI (no-op without it).
void cluster_finish();

/// Every rank's `mine`, in rank order, at rank 0 (a collective call: every rank must make it);
/// other ranks get an empty vector. Without MPI: {mine}.
std::vector<std::string> gather_text(const std::string& mine);

}  // namespace cnncert::cli
