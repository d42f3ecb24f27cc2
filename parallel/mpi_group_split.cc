#include "parallel/mpi_group_split.h"

#include <algorithm>
#include <stdexcept>

#include "parallel/mpi_env.h"

namespace tessera::parallel {

MpiGroupSplit split_mpi_group(MPI_Comm parent, int rank, const std::vector<int>& ranks,
                              const std::string& name, const std::string& what) {
  MpiGroupSplit s;
  s.color = *std::min_element(ranks.begin(), ranks.end());
  s.key = static_cast<int>(std::find(ranks.begin(), ranks.end(), rank) - ranks.begin());
  check_mpi(MPI_Comm_split(parent, s.color, s.key, &s.comm), what + ": MPI_Comm_split");
  try {
    check_mpi(MPI_Comm_set_errhandler(s.comm, MPI_ERRORS_RETURN),
              what + ": MPI_Comm_set_errhandler");
    // Every member must have named the same group; checked on all ranks of the parent so that
    // every rank throws, not only those whose list was wrong.
    int size = 0;
    MPI_Comm_size(s.comm, &size);
    std::vector<int> members(size);
    check_mpi(MPI_Allgather(&rank, 1, MPI_INT, members.data(), 1, MPI_INT, s.comm),
              what + ": MPI_Allgather");
    const int ok = members == ranks ? 1 : 0;
    int all_ok = 0;
    check_mpi(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, parent), what + ": MPI_Allreduce");
    if (!all_ok) {
      std::string got = "{";
      for (size_t i = 0; i < members.size(); ++i) {
        got += (i ? "," : "") + std::to_string(members[i]);
      }
      throw std::runtime_error(what + ": the ranks' groups disagree (this rank asked for " + name +
                               ", its members by their own lists form " + got + "})");
    }
  } catch (...) {
    MPI_Comm_free(&s.comm);
    throw;
  }
  return s;
}

}  // namespace tessera::parallel
