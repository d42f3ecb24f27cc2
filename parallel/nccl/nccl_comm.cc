#include "parallel/nccl/nccl_comm.h"

#include <nccl.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "kernels/cuda/device.h"
#include "parallel/mpi_env.h"
#include "parallel/mpi_group_split.h"
#include "parallel/nccl/device_guard.h"
#include "parallel/nccl/nccl_engine.h"

namespace tessera::parallel {

namespace {

using nccl_detail::Engine;
using nccl_detail::nccl_error;

// Throws std::invalid_argument for the element types NCCL lacks.
ncclDataType_t nccl_type(DType dtype, const char* op) {
  switch (dtype) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kF64:
      return ncclFloat64;
    case DType::kI32:
      return ncclInt32;
    case DType::kI64:
      return ncclInt64;
    case DType::kU32:
      return ncclUint32;
    case DType::kU16:
      break;
  }
  throw std::invalid_argument(std::string("NcclComm ") + op + ": element type " +
                              kernels::dtype_name(dtype) +
                              " has no NCCL data type (use f32, f64, i32, i64 or u32)");
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kProd:
      return ncclProd;
    case ReduceOp::kMin:
      return ncclMin;
    case ReduceOp::kMax:
      return ncclMax;
  }
  throw std::invalid_argument("NcclComm: unsupported reduce op");
}

std::string count_detail(DType dtype, int64_t count) {
  return std::string(kernels::dtype_name(dtype)) + " x " + std::to_string(count);
}

// Every rank of comm learns whether every rank succeeded; throws on all of them if not.
void agree(MPI_Comm comm, const std::string& local_error, const std::string& what) {
  int ok = local_error.empty() ? 1 : 0, all = 0;
  check_mpi(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm), what + ": MPI_Allreduce");
  if (all) return;
  throw std::runtime_error(what + ": " + (ok ? std::string("failed on another rank") : local_error));
}

// MPI_COMM_WORLD rank of each rank of comm.
std::vector<int> world_ranks_of(MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  MPI_Group group = MPI_GROUP_NULL, world = MPI_GROUP_NULL;
  check_mpi(MPI_Comm_group(comm, &group), "MPI_Comm_group");
  check_mpi(MPI_Comm_group(MPI_COMM_WORLD, &world), "MPI_Comm_group(MPI_COMM_WORLD)");
  std::vector<int> ranks(size), world_ranks(size);
  std::iota(ranks.begin(), ranks.end(), 0);
  const int rc = MPI_Group_translate_ranks(group, size, ranks.data(), world, world_ranks.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  check_mpi(rc, "MPI_Group_translate_ranks");
  return world_ranks;
}

}  // namespace

std::unique_ptr<NcclComm> NcclComm::create(MPI_Comm group, int device, std::string name,
                                           const NcclCommOptions& options) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) {
    throw std::logic_error("NcclComm::create: MPI is not initialized (create an MpiEnv first)");
  }
  if (name.empty()) name = "nccl";
  const std::string what = "creating NCCL communicator '" + name + "' on CUDA device " +
                           std::to_string(device);
  MPI_Comm comm = MPI_COMM_NULL;
  check_mpi(MPI_Comm_dup(group, &comm), what + ": MPI_Comm_dup");
  try {
    check_mpi(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), what + ": MPI_Comm_set_errhandler");
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);

    // Every rank selects its device before anybody waits inside NCCL for the others.
    std::string error;
    std::unique_ptr<nccl_detail::DeviceGuard> guard;
    try {
      guard = std::make_unique<nccl_detail::DeviceGuard>(device);
    } catch (const std::exception& e) {
      error = e.what();
    }
    agree(comm, error, what);

    // Rank 0 draws the unique id; MPI carries it to the others.
    ncclUniqueId id{};
    int id_ok = 1;
    if (rank == 0) {
      const ncclResult_t result = ncclGetUniqueId(&id);
      if (result != ncclSuccess) {
        id_ok = 0;
        error = "ncclGetUniqueId: " + nccl_error(result, nullptr);
      }
    }
    check_mpi(MPI_Bcast(&id_ok, 1, MPI_INT, 0, comm), what + ": MPI_Bcast");
    if (!id_ok) {
      throw std::runtime_error(what + ": " + (rank == 0 ? error : "rank 0 failed to draw the id"));
    }
    check_mpi(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm), what + ": MPI_Bcast");

    ncclComm_t nccl = nullptr;
    const ncclResult_t result = ncclCommInitRank(&nccl, size, id, rank);
    if (result != ncclSuccess) error = "ncclCommInitRank: " + nccl_error(result, nullptr);
    std::shared_ptr<Engine> engine;
    if (error.empty()) {
      Engine::Settings settings;
      settings.device = device;
      settings.timeout_s = options.timeout_s;
      settings.poll_interval_us = options.poll_interval_us;
      settings.compute_stream = options.compute_stream;
      settings.comm_name = name;
      try {
        engine = Engine::start(nccl, settings);  // aborts nccl if it throws
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    try {
      agree(comm, error, what);
    } catch (...) {
      if (engine) {
        engine->request_abort(what + " failed on another rank");
        engine->shutdown();
      }
      throw;
    }
    return std::unique_ptr<NcclComm>(new NcclComm(comm, std::move(engine), std::move(name)));
  } catch (...) {
    MPI_Comm_free(&comm);
    throw;
  }
}

std::unique_ptr<NcclComm> NcclComm::create(const MpiComm& group, int device, std::string name,
                                           const NcclCommOptions& options) {
  return create(group.handle(), device, name.empty() ? group.name() : std::move(name), options);
}

NcclComm::NcclComm(MPI_Comm mpi_comm, std::shared_ptr<nccl_detail::Engine> engine,
                   std::string name)
    : Comm(std::move(name)), mpi_comm_(mpi_comm), engine_(std::move(engine)) {
  MPI_Comm_rank(mpi_comm_, &rank_);
  MPI_Comm_size(mpi_comm_, &size_);
  try {
    world_ranks_ = world_ranks_of(mpi_comm_);
  } catch (const std::exception& e) {
    engine_->request_abort(e.what());
    engine_->shutdown();
    throw;  // the caller frees mpi_comm
  }
}

NcclComm::~NcclComm() {
  engine_->shutdown();
  MPI_Comm_free(&mpi_comm_);
}

void NcclComm::stream_wait(const Work& work, cudaStream_t stream) {
  engine_->stream_wait(work, stream);
}

void NcclComm::flush() { engine_->flush(); }

void NcclComm::abort(const std::string& reason) { engine_->request_abort(reason); }

bool NcclComm::broken() const { return engine_->broken(); }

bool NcclComm::aborted() const { return engine_->aborted(); }

int NcclComm::device() const { return engine_->device(); }

cudaStream_t NcclComm::stream() const { return engine_->stream(); }

cudaStream_t NcclComm::compute_stream() const { return engine_->compute_stream(); }

void NcclComm::set_compute_stream(cudaStream_t stream) { engine_->set_compute_stream(stream); }

double NcclComm::timeout_s() const { return engine_->timeout_s(); }

void NcclComm::set_timeout_s(double seconds) { engine_->set_timeout_s(seconds); }

std::string NcclComm::peer_detail(const char* direction, int peer) const {
  return std::string(direction) + " rank " + std::to_string(peer) + " (world rank " +
         std::to_string(world_ranks_[peer]) + ")";
}

Work NcclComm::post_all_reduce(const void* in, void* out, int64_t count, DType dtype,
                               ReduceOp op) {
  const ncclDataType_t type = nccl_type(dtype, "all_reduce");
  const ncclRedOp_t rop = nccl_op(op);
  std::lock_guard<std::mutex> lock(post_mu_);
  const std::string description = describe("all_reduce", next_collective_seq(),
                                           count_detail(dtype, count) + ", " + reduce_op_name(op));
  return engine_->collective(work_options(description), [&](ncclComm_t comm, cudaStream_t s) {
    if (count == 0) return ncclSuccess;  // zero on every rank: nothing to do
    return ncclAllReduce(in, out, static_cast<size_t>(count), type, rop, comm, s);
  });
}

Work NcclComm::post_reduce_scatter(const void* in, void* out, int64_t count_per_rank,
                                   DType dtype, ReduceOp op) {
  const ncclDataType_t type = nccl_type(dtype, "reduce_scatter");
  const ncclRedOp_t rop = nccl_op(op);
  std::lock_guard<std::mutex> lock(post_mu_);
  const std::string description =
      describe("reduce_scatter", next_collective_seq(),
               count_detail(dtype, count_per_rank) + " per rank, " + reduce_op_name(op));
  // NCCL's in-place form is Comm's: out == in + rank * count_per_rank.
  return engine_->collective(work_options(description), [&](ncclComm_t comm, cudaStream_t s) {
    if (count_per_rank == 0) return ncclSuccess;  // zero on every rank: nothing to do
    return ncclReduceScatter(in, out, static_cast<size_t>(count_per_rank), type, rop, comm, s);
  });
}

Work NcclComm::post_all_gather(const void* in, void* out, int64_t count_per_rank, DType dtype) {
  const ncclDataType_t type = nccl_type(dtype, "all_gather");
  std::lock_guard<std::mutex> lock(post_mu_);
  const std::string description = describe("all_gather", next_collective_seq(),
                                           count_detail(dtype, count_per_rank) + " per rank");
  // NCCL's in-place form is Comm's: in == out + rank * count_per_rank.
  return engine_->collective(work_options(description), [&](ncclComm_t comm, cudaStream_t s) {
    if (count_per_rank == 0) return ncclSuccess;  // zero on every rank: nothing to do
    return ncclAllGather(in, out, static_cast<size_t>(count_per_rank), type, comm, s);
  });
}

Work NcclComm::post_all_to_all_v(const void* in, int64_t in_count, void* out, DType dtype,
                                 const AllToAllVOptions& options) {
  const ncclDataType_t type = nccl_type(dtype, "all_to_all_v");
  std::lock_guard<std::mutex> lock(post_mu_);
  int64_t sent = 0, received = 0;
  for (int64_t c : options.send_counts) sent += c;
  for (int64_t c : options.recv_counts) received += c;
  const std::string description =
      describe("all_to_all_v", next_collective_seq(),
               std::string(kernels::dtype_name(dtype)) + ", send " + std::to_string(sent) +
                   ", recv " + std::to_string(received));
  const size_t esize = kernels::dtype_size(dtype);
  return engine_->collective(work_options(description), [&](ncclComm_t comm, cudaStream_t s) {
    // In place, a receive could overwrite a block not sent yet: send from a stream-ordered copy.
    const char* send = static_cast<const char*>(in);
    void* copy = nullptr;
    const size_t in_bytes = static_cast<size_t>(in_count) * esize;
    if (in == out && in_bytes > 0) {
      TESSERA_CUDA_CHECK(cudaMallocAsync(&copy, in_bytes, s));
      const cudaError_t status = cudaMemcpyAsync(copy, in, in_bytes, cudaMemcpyDeviceToDevice, s);
      if (status != cudaSuccess) cudaFreeAsync(copy, s);
      TESSERA_CUDA_CHECK(status);
      send = static_cast<const char*>(copy);
    }
    ncclResult_t result = ncclGroupStart();
    if (result == ncclSuccess) {
      for (int j = 0; j < size_ && result == ncclSuccess; ++j) {
        // A zero count is zero on both sides (recv_counts[j] here == send_counts[rank] on j).
        if (options.send_counts[j] > 0) {
          result = ncclSend(send + options.send_displs[j] * esize,
                            static_cast<size_t>(options.send_counts[j]), type, j, comm, s);
        }
        if (result == ncclSuccess && options.recv_counts[j] > 0) {
          result = ncclRecv(static_cast<char*>(out) + options.recv_displs[j] * esize,
                            static_cast<size_t>(options.recv_counts[j]), type, j, comm, s);
        }
      }
      const ncclResult_t end = ncclGroupEnd();
      if (result == ncclSuccess) result = end;
    }
    if (copy) cudaFreeAsync(copy, s);  // after the group, in stream order
    return result;
  });
}

Work NcclComm::post_send(const void* data, int64_t count, DType dtype, int dst, int tag) {
  const ncclDataType_t type = nccl_type(dtype, "send");
  std::lock_guard<std::mutex> lock(post_mu_);
  const std::string description =
      describe("send", next_p2p_seq(),
               count_detail(dtype, count) + " " + peer_detail("to", dst) + ", tag " +
                   std::to_string(tag));
  // NCCL only reads the send buffer.
  return engine_->point_to_point(work_options(description), /*is_send=*/true,
                                 const_cast<void*>(data), static_cast<size_t>(count), type, dst);
}

Work NcclComm::post_recv(void* data, int64_t count, DType dtype, int src, int tag) {
  const ncclDataType_t type = nccl_type(dtype, "recv");
  std::lock_guard<std::mutex> lock(post_mu_);
  const std::string description =
      describe("recv", next_p2p_seq(),
               count_detail(dtype, count) + " " + peer_detail("from", src) + ", tag " +
                   std::to_string(tag));
  return engine_->point_to_point(work_options(description), /*is_send=*/false, data,
                                 static_cast<size_t>(count), type, src);
}

Work NcclComm::post_broadcast(void* data, int64_t count, DType dtype, int root) {
  const ncclDataType_t type = nccl_type(dtype, "broadcast");
  std::lock_guard<std::mutex> lock(post_mu_);
  const std::string description =
      describe("broadcast", next_collective_seq(),
               count_detail(dtype, count) + ", root " + std::to_string(root));
  return engine_->collective(work_options(description), [&](ncclComm_t comm, cudaStream_t s) {
    if (count == 0) return ncclSuccess;  // zero on every rank: nothing to do
    return ncclBroadcast(data, data, static_cast<size_t>(count), type, root, comm, s);
  });
}

Work NcclComm::post_barrier() {
  std::lock_guard<std::mutex> lock(post_mu_);
  const std::string description = describe("barrier", next_collective_seq(), "");
  float* scratch = engine_->scratch();
  // max of zeros stays zero: the word never overflows however many barriers run.
  return engine_->collective(work_options(description), [&](ncclComm_t comm, cudaStream_t s) {
    return ncclAllReduce(scratch, scratch, 1, ncclFloat32, ncclMax, comm, s);
  });
}

std::unique_ptr<Comm> NcclComm::split(const std::vector<int>& ranks, std::string name) {
  check_split_ranks(ranks);
  std::lock_guard<std::mutex> lock(post_mu_);
  if (broken()) {
    throw std::runtime_error("cannot split NCCL comm '" + this->name() +
                             "': it is broken after a communication failure");
  }
  if (name.empty()) name = default_split_name(ranks);
  const std::string what = describe("split", next_collective_seq(), "group " + name);
  const MpiGroupSplit sub = split_mpi_group(mpi_comm_, rank_, ranks, name, what);
  try {
    // NCCL orders the new ranks by key, as MPI did: the ranks agree.
    ncclComm_t nccl_sub = engine_->split(sub.color, sub.key, what);
    Engine::Settings settings = engine_->settings();
    settings.timeout_s = engine_->timeout_s();
    settings.compute_stream = engine_->compute_stream();
    settings.comm_name = name;
    std::shared_ptr<Engine> engine = Engine::start(nccl_sub, settings);
    return std::unique_ptr<Comm>(new NcclComm(sub.comm, std::move(engine), std::move(name)));
  } catch (...) {
    MPI_Comm comm = sub.comm;
    MPI_Comm_free(&comm);
    throw;
  }
}

}  // namespace tessera::parallel
