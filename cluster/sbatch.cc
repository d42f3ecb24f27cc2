#include "cluster/sbatch.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "cluster/process.h"

namespace tessera::cluster {

namespace fs = std::filesystem;

std::string sbatch_submit(const std::string& script, const std::string& script_path) {
  const fs::path path(script_path);
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << script;
    if (!out) throw std::runtime_error(script_path + ": cannot write the job script");
  }
  const ProcessResult r = run_process({"sbatch", "--parsable", script_path}, true);
  if (r.status != 0) {
    throw std::runtime_error("sbatch " + script_path + " failed with exit status " +
                             std::to_string(r.status));
  }
  // --parsable prints "JOBID" or "JOBID;CLUSTER".
  const std::string id = r.output.substr(0, r.output.find_first_of(";\r\n"));
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos) {
    throw std::runtime_error("sbatch printed '" + r.output + "', not a job id");
  }
  return id;
}

std::string this_executable() { return fs::canonical("/proc/self/exe").string(); }

}  // namespace tessera::cluster
