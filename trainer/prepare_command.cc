#include "trainer/prepare_command.h"

#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdint>
#include <iostream>
#include <sstream>

#include "data/data_error.h"
#include "data/prepare_synthetic.h"
#include "data/prepare_text.h"

namespace tessera::trainer {

namespace po = boost::program_options;

namespace {

constexpr const char* kUsage =
    "Usage: tessera prepare <source> [options]\n\n"
    "Writes a token dataset directory: manifest.yaml and HDF5 shards shard-NNNNN.h5.\n\n"
    "Sources:\n"
    "  text       UTF-8 text files tokenized with a byte-level tokenizer or a byte-level BPE\n"
    "  synthetic  a random order-K Markov chain whose exact entropy rate is recorded\n\n"
    "Run `tessera prepare text --help` or `tessera prepare synthetic --help` for options.\n";

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "2000000", "2M", "16k", "1G" (decimal suffixes k, M, G, T), > 0.
uint64_t parse_count(const std::string& text, const char* option) {
  uint64_t multiplier = 1;
  std::string digits = text;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'k': case 'K': multiplier = 1000; break;
      case 'm': case 'M': multiplier = 1000000; break;
      case 'g': case 'G': multiplier = 1000000000; break;
      case 't': case 'T': multiplier = 1000000000000; break;
      default: break;
    }
    if (multiplier != 1) digits.pop_back();
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 15) {
    throw UsageError(std::string("--") + option + ": expected a positive count (e.g. 2000000 or 2M), got '" + text + "'");
  }
  const uint64_t value = std::stoull(digits) * multiplier;
  if (value == 0) throw UsageError(std::string("--") + option + ": must be > 0");
  return value;
}

// Interprets \n, \t, \r and \\ so delimiters like "\n\n" can be typed on a shell.
std::string unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    switch (text[++i]) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      default: out += '\\'; out += text[i]; break;
    }
  }
  return out;
}

constexpr unsigned kLineLength = 100;
constexpr unsigned kDescriptionColumn = 50;

po::options_description common_options() {
  po::options_description o("Common options", kLineLength, kDescriptionColumn);
  o.add_options()
      ("out", po::value<std::string>()->value_name("DIR"), "output dataset directory (required)")
      ("val-fraction", po::value<double>()->default_value(0.05, "0.05")->value_name("F"),
       "share held out for validation, in (0, 1)")
      ("shard-tokens", po::value<std::string>()->default_value("16777216")->value_name("N"),
       "tokens per shard (suffixes k, M, G allowed)")
      ("overwrite", po::bool_switch(), "replace a dataset already in DIR")
      ("quiet", po::bool_switch(), "no progress output")
      ("help,h", "show this help");
  return o;
}

// The values of common_options() into PrepareTextOptions or PrepareSyntheticOptions.
template <typename Options>
void read_common_options(const po::variables_map& vm, Options& o) {
  o.out_dir = vm["out"].as<std::string>();
  o.val_fraction = vm["val-fraction"].as<double>();
  o.shard_tokens = parse_count(vm["shard-tokens"].as<std::string>(), "shard-tokens");
  o.overwrite = vm["overwrite"].as<bool>();
  if (!vm["quiet"].as<bool>()) {
    o.log = &std::cerr;
    o.tty = ::isatty(STDERR_FILENO) != 0;
  }
}

struct Parsed {
  po::variables_map vm;
  bool help = false;
};

Parsed parse(const std::vector<std::string>& args, const po::options_description& options,
             const po::positional_options_description* positional) {
  Parsed parsed;
  po::command_line_parser parser(args);
  parser.options(options);
  if (positional != nullptr) parser.positional(*positional);
  po::store(parser.run(), parsed.vm);
  parsed.help = parsed.vm.count("help") > 0;
  if (!parsed.help) po::notify(parsed.vm);
  return parsed;
}

// Option values out of range are usage errors (exit 2), not failures of the prepare itself.
template <typename Fn>
void check_options(Fn&& fn) {
  try {
    fn();
  } catch (const data::DataError& e) {
    std::string message = e.what();
    // "prepare text: --x ..." -> "--x ...": the command prints its own name first.
    if (message.rfind("prepare ", 0) == 0 && message.find(": ") != std::string::npos) {
      message.erase(0, message.find(": ") + 2);
    }
    throw UsageError(message);
  }
}

void require(const po::variables_map& vm, const char* option) {
  if (!vm.count(option)) throw UsageError(std::string("the option '--") + option + "' is required");
}

int text_command(const std::vector<std::string>& args) {
  po::options_description text("Usage: tessera prepare text [options] --out DIR FILE|DIR...\n\n"
                               "Tokenizes UTF-8 text files (directories are searched recursively) "
                               "into documents\nfollowed by the end-of-document id 256, split into "
                               "train and validation documents.\nInput that is not valid UTF-8 is "
                               "refused, naming the file, byte offset and line of the\nfirst "
                               "invalid sequence, and nothing is written (see "
                               "--replace-invalid-utf8).\n\nText options",
                               kLineLength, kDescriptionColumn);
  text.add_options()
      ("tokenizer", po::value<std::string>()->default_value("byte")->value_name("byte|bpe"),
       "byte: ids 0-255 are bytes, 256 ends a document (vocab 257); bpe: a byte-level BPE "
       "trained on the training documents, merges saved as DIR/bpe-merges.txt")
      ("vocab", po::value<int64_t>()->value_name("N"), "bpe vocabulary size, > 257 (bpe only)")
      ("doc-delimiter", po::value<std::string>()->value_name("STR"),
       "string separating documents inside a file (\\n, \\t escapes allowed); "
       "default: each file is one document")
      ("seed", po::value<uint64_t>()->default_value(0)->value_name("S"),
       "seed of the choice of validation documents")
      ("replace-invalid-utf8", po::bool_switch(),
       "replace each invalid UTF-8 sequence with U+FFFD (and report how many) instead of "
       "refusing the input");
  text.add(common_options());
  po::options_description hidden;
  hidden.add_options()("input", po::value<std::vector<std::string>>(), "input files or directories");
  po::options_description all;
  all.add(text).add(hidden);
  po::positional_options_description positional;
  positional.add("input", -1);
  const Parsed p = parse(args, all, &positional);
  if (p.help) {
    std::cout << text << "\n";
    return 0;
  }
  require(p.vm, "out");
  if (!p.vm.count("input")) throw UsageError("no input files given");
  data::PrepareTextOptions o;
  o.inputs = p.vm["input"].as<std::vector<std::string>>();
  o.tokenizer = p.vm["tokenizer"].as<std::string>();
  if (o.tokenizer != "byte" && o.tokenizer != "bpe") {
    throw UsageError("--tokenizer must be byte or bpe, got '" + o.tokenizer + "'");
  }
  if (p.vm.count("vocab")) o.vocab_size = p.vm["vocab"].as<int64_t>();
  if (o.tokenizer == "bpe" && !p.vm.count("vocab")) throw UsageError("--tokenizer bpe needs --vocab N");
  if (p.vm.count("doc-delimiter")) o.doc_delimiter = unescape(p.vm["doc-delimiter"].as<std::string>());
  o.seed = p.vm["seed"].as<uint64_t>();
  o.replace_invalid_utf8 = p.vm["replace-invalid-utf8"].as<bool>();
  read_common_options(p.vm, o);
  check_options([&] { data::validate(o); });
  std::cout << data::format_summary(data::prepare_text(o));
  return 0;
}

int synthetic_command(const std::vector<std::string>& args) {
  po::options_description synthetic(
      "Usage: tessera prepare synthetic --vocab V --order K --tokens N [--seed S] --out DIR\n\n"
      "Samples a random order-K Markov chain over V tokens. Each context's next token has a\n"
      "support of --support tokens (always including its de Bruijn successor, which makes the\n"
      "chain ergodic) with probabilities (1 - smoothing) * Dirichlet(concentration) + smoothing /\n"
      "support. The exact entropy rate (the lowest achievable loss) goes into the manifest.\n"
      "The last --val-fraction of the stream is the validation split.\n\nSynthetic options",
      kLineLength, kDescriptionColumn);
  synthetic.add_options()
      ("vocab", po::value<int64_t>()->value_name("V"), "vocabulary size, >= 2 (required)")
      ("order", po::value<int64_t>()->default_value(1)->value_name("K"),
       "tokens of context, >= 1; vocab^order <= 4194304")
      ("tokens", po::value<std::string>()->value_name("N"), "tokens to draw (required; k, M, G allowed)")
      ("seed", po::value<uint64_t>()->default_value(0)->value_name("S"), "seed of the chain and the sample")
      ("support", po::value<int64_t>()->default_value(4)->value_name("M"),
       "next-token support per context, in [2, vocab]")
      ("concentration", po::value<double>()->default_value(1.0, "1")->value_name("A"),
       "Dirichlet concentration (small: peaked distributions)")
      ("smoothing", po::value<double>()->default_value(0.1, "0.1")->value_name("E"),
       "probability mass spread evenly over the support, in [0, 1)");
  synthetic.add(common_options());
  const Parsed p = parse(args, synthetic, nullptr);
  if (p.help) {
    std::cout << synthetic << "\n";
    return 0;
  }
  require(p.vm, "vocab");
  require(p.vm, "tokens");
  require(p.vm, "out");
  data::PrepareSyntheticOptions o;
  o.chain.vocab = p.vm["vocab"].as<int64_t>();
  o.chain.order = p.vm["order"].as<int64_t>();
  o.chain.seed = p.vm["seed"].as<uint64_t>();
  o.chain.support = p.vm["support"].as<int64_t>();
  o.chain.concentration = p.vm["concentration"].as<double>();
  o.chain.smoothing = p.vm["smoothing"].as<double>();
  o.tokens = parse_count(p.vm["tokens"].as<std::string>(), "tokens");
  read_common_options(p.vm, o);
  check_options([&] { data::validate(o); });
  std::cout << data::format_summary(data::prepare_synthetic(o));
  return 0;
}

}  // namespace

int run_prepare_command(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string& source = args[0];
  if (source == "--help" || source == "-h" || source == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (source != "text" && source != "synthetic") {
    std::cerr << "tessera prepare: unknown source '" << source << "'\n\n" << kUsage;
    return 2;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  const std::string name = "tessera prepare " + source;
  try {
    return source == "text" ? text_command(rest) : synthetic_command(rest);
  } catch (const po::error& e) {
    std::cerr << name << ": " << e.what() << "\n(run `" << name << " --help` for usage)\n";
    return 2;
  } catch (const UsageError& e) {
    std::cerr << name << ": " << e.what() << "\n(run `" << name << " --help` for usage)\n";
    return 2;
  } catch (const data::DataError& e) {
    std::cerr << name << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tessera::trainer
