// `tessera trace plot RUN_DIR [--out FILE.png] [--width PX]`: the PNG timeline of a run's
// Chrome trace (cluster/trace_plot.h).
#include <boost/program_options.hpp>
#include <iostream>

#include "cluster/commands.h"
#include "cluster/trace_plot.h"

namespace tessera::cluster {

namespace po = boost::program_options;

int run_trace_command(const std::vector<std::string>& args) {
  po::options_description visible(
      "Usage: tessera trace plot RUN_DIR [--out FILE.png] [--width PX]\n\n"
      "Draws RUN_DIR/trace.json (written by `tessera train` for the steps of\n"
      "logging.trace_steps) as a PNG timeline: one band per rank, its compute row (F, B, W and\n"
      "other pieces in their colours) above its communication row (every communicator's\n"
      "operations, post to completion), time in ms on x; where communication lies under\n"
      "compute, it is overlapped. Needs gnuplot (Debian: gnuplot-nox); the gnuplot script is kept\n"
      "next to the PNG (FILE.gp). RUN_DIR may also be the trace file itself. Open trace.json in\n"
      "ui.perfetto.dev or chrome://tracing for the events' names and args.\n\n"
      "Options");
  visible.add_options()
      ("help,h", "show this help")
      ("out", po::value<std::string>(), "PNG to write (default: RUN_DIR/trace.png)")
      ("width", po::value<int>()->default_value(1600), "image width in pixels (>= 200)");
  po::options_description all;
  all.add(visible).add_options()("words", po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add("words", -1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "tessera trace: " << e.what() << "\n" << visible << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << visible << "\n";
    return 0;
  }
  const std::vector<std::string> words =
      vm.count("words") ? vm["words"].as<std::vector<std::string>>() : std::vector<std::string>{};
  if (words.size() != 2 || words[0] != "plot") {
    std::cerr << "tessera trace: expected `plot RUN_DIR`\n" << visible << "\n";
    return 2;
  }
  TracePlotOptions options;
  if (vm.count("out")) options.out = vm["out"].as<std::string>();
  options.width = vm["width"].as<int>();
  if (options.width < 200) {
    std::cerr << "tessera trace plot: --width must be >= 200 pixels, got " << options.width << "\n";
    return 2;
  }
  try {
    const std::string png = plot_trace(words[1], options);
    std::cout << "tessera trace plot: wrote " << png << "\n";
  } catch (const std::exception& e) {
    std::cerr << "tessera trace plot: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace tessera::cluster
