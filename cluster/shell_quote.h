// Shell quoting for the job scripts tessera writes: a value quoted here is one literal word to
// bash whatever bytes it holds ($(...), backticks, quotes, newlines included).
#pragma once

#include <string>
#include <string_view>

namespace tessera::cluster {

// `value` as one single-quoted bash word: 'it'\''s'. Throws std::invalid_argument on a NUL byte,
// which no shell word can hold.
std::string shell_quote(std::string_view value);

}  // namespace tessera::cluster
