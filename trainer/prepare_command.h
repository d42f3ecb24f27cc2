// `tessera prepare`: writes an HDF5 token dataset (data/README.md describes the format).
//   tessera prepare text --tokenizer byte|bpe [--vocab N] --out DIR FILE|DIR...
//   tessera prepare synthetic --vocab V --order K --tokens N --seed S --out DIR
// The work is done by data::prepare_text / data::prepare_synthetic; this file parses options.
#pragma once

#include <string>
#include <vector>

namespace tessera::trainer {

// `args`: everything after the word `prepare`. Returns 0 on success (and for --help), 1 when the
// prepare fails (message on stderr naming the file or option), 2 for bad usage.
int run_prepare_command(const std::vector<std::string>& args);

}  // namespace tessera::trainer
