// Option groups and helpers shared by the subcommands.
#include "tools/driver.h"

#include "ir/types.h"
#include "passes/layout.h"

namespace vitc::tools {

int report(const Error &error) {
  std::cerr << error.str() << std::endl;
  return kExitError;
}

int usageError(const std::string &message) {
  std::cerr << "vitc: error: " << message << "\n(run 'vitc --help' for usage)" << std::endl;
  return kExitUsage;
}

void ModelOptions::add(po::options_description &desc) {
  desc.add_options()("model", po::value(&model)->required(),
                     "model: spec (.vit), Hugging Face directory or config.json, or IR (.ir)")(
      "batch", po::value(&batch)->default_value(1),
      "images per batch")("mesh", po::value(&mesh), "device mesh, e.g. data=2,model=4")(
      "layout", po::value(&layout), "sharding layout (JSON, as vitc autotune writes it)");
}

void PassFlags::add(po::options_description &desc) {
  desc.add_options()("passes", po::value(&passes),
                     "comma-separated passes to run instead of "
                     "the default pipeline")("disable-pass", po::value(&disable),
                                             "comma-separated passes to skip")(
      "print-before", po::value(&printBefore), "print the IR before these passes")(
      "print-after", po::value(&printAfter), "print the IR after these passes")(
      "print-after-all", po::bool_switch(&printAfterAll), "print the IR after every pass")(
      "print-changed", po::bool_switch(&printChanged), "print the IR after passes that changed it")(
      "verify-each", po::bool_switch(&verifyEach),
      "verify the IR after every pass (always on in debug builds)")(
      "stop-after-pass-num", po::value(&stopAfterPassNum), "run only the first N passes")(
      "time-passes", po::bool_switch(&timePasses), "report the time each pass took")(
      "dump-dir", po::value(&dumpDir), "write the IR before and after each pass to numbered files")(
      "pass-option", po::value(&settings)->composing(), "a pass setting, key=value (repeatable)");
}

namespace {

// The passes named by a flag's value; errors name the flag.
Expected<std::vector<std::string>> passList(const char *flag, const std::string &list) {
  Expected<std::vector<std::string>> names = passes::parsePassList(list);
  if (!names)
    return Error(Loc::inFile(flag), names.error().message());
  return names;
}

Expected<std::set<std::string>> passSet(const char *flag, const std::string &list) {
  VITC_ASSIGN(std::vector<std::string> names, passList(flag, list));
  return std::set<std::string>(names.begin(), names.end());
}

} // namespace

Expected<passes::PipelineOptions> PassFlags::toOptions() const {
  passes::PipelineOptions o;
  VITC_ASSIGN(o.passes, passList("--passes", passes));
  VITC_ASSIGN(o.disabled, passSet("--disable-pass", disable));
  VITC_ASSIGN(o.printBefore, passSet("--print-before", printBefore));
  VITC_ASSIGN(o.printAfter, passSet("--print-after", printAfter));
  o.printAfterAll = printAfterAll;
  o.printChanged = printChanged;
  o.timePasses = timePasses;
  o.stopAfterPassNum = stopAfterPassNum;
  o.dumpDir = dumpDir;
#ifndef NDEBUG
  o.verifyEach = true;
#else
  o.verifyEach = verifyEach;
#endif
  return o;
}

passes::PassOptions PassFlags::passOptions() const {
  passes::PassOptions o;
  for (const std::string &s : settings) {
    size_t eq = s.find('=');
    o.settings.emplace_back(s.substr(0, eq), eq == std::string::npos ? "" : s.substr(eq + 1));
  }
  return o;
}

Expected<frontend::LoadedModel> loadModel(const ModelOptions &options,
                                          passes::PassOptions *passOptions) {
  frontend::LoadOptions lo;
  lo.batch = options.batch;
  VITC_ASSIGN(frontend::LoadedModel m, frontend::loadModel(options.model, lo));
  std::string meshText = options.mesh;
  Loc meshLoc = Loc::inFile("--mesh");
  if (!options.layout.empty()) {
    VITC_ASSIGN(passes::LayoutFile layout, passes::readLayoutFile(options.layout));
    if (!layout.mesh.empty()) {
      VITC_ASSIGN(ir::Mesh fromFile, ir::parseMesh(layout.mesh, Loc::inFile(options.layout)));
      if (!meshText.empty()) {
        VITC_ASSIGN(ir::Mesh given, ir::parseMesh(meshText, meshLoc));
        if (!(given == fromFile))
          return makeError(meshLoc, "--mesh {} differs from the layout's mesh ({}) in {}",
                           given.str(), fromFile.str(), options.layout);
      }
      meshText = layout.mesh;
      meshLoc = Loc::inFile(options.layout);
    }
    if (passOptions)
      for (auto &setting : layout.layout.settings())
        passOptions->settings.push_back(setting);
  }
  if (!meshText.empty()) {
    VITC_ASSIGN(ir::Mesh mesh, ir::parseMesh(meshText, meshLoc));
    if (m.format == frontend::ModelFormat::IrText && !(mesh == m.module->mesh))
      return makeError(meshLoc,
                       "the IR in {} is already for mesh ({}); it cannot be changed to ({})",
                       m.path, m.module->mesh.str(), mesh.str());
    m.module->mesh = mesh;
  }
  return m;
}

bool parseArgs(int argc, char **argv, const po::options_description &desc,
               const po::positional_options_description &positional, po::variables_map &vm,
               const char *usage, int &exit) {
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout << usage << "\n" << desc << std::endl;
      exit = 0;
      return false;
    }
    po::notify(vm);
  } catch (const po::error &e) {
    exit = usageError(e.what());
    return false;
  }
  return true;
}

} // namespace vitc::tools
