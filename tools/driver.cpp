// Option groups and helpers shared by the subcommands.
#include "tools/driver.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/types.h"
#include "passes/layout.h"

namespace vitc::tools {

int report(const Error &error) {
  std::cerr << error.str() << std::endl;
  return kExitError;
}

int usageError(const std::string &message) {
  // Error escapes the control characters a user's argument may hold.
  std::cerr << "vitc: error: " << Error(message).message() << std::endl;
  return kExitUsage;
}

int usageError(const Error &error) {
  std::cerr << error.str() << std::endl;
  return kExitUsage;
}

int usageErrorOf(const Error &error) {
  return error.loc().file ? usageError(error) : usageError(error.message());
}

void ModelOptions::add(po::options_description &desc, const char *batchHelp,
                       const char *batchDefault) {
  desc.add_options()("model", po::value(&model)->required(),
                     "model: spec (.vit), Hugging Face directory or config.json, or IR (.ir)")(
      "batch", po::value(&batch)->default_value(1, batchDefault),
      batchHelp)("mesh", po::value(&mesh), "device mesh, e.g. data=2,model=4")(
      "layout", po::value(&layout), "sharding layout (JSON, as vitc autotune writes it)");
}

Status ModelOptions::check() const {
  if (batch < 1 || batch > kMaxBatch)
    return makeError(Loc::inFile("--batch"), "the batch must be between 1 and {}, got {}",
                     kMaxBatch, batch);
  if (!mesh.empty())
    VITC_TRY(ir::parseMesh(mesh, Loc::inFile("--mesh")));
  return Status::ok();
}

std::vector<std::pair<std::string, std::string>> ModelOptions::inputFiles() const {
  std::vector<std::pair<std::string, std::string>> files{
      {"the model", model},
      {"the model", model + ".vit"},
      {"the model", (std::filesystem::path(model) / "config.json").string()},
      {"the model's weights", (std::filesystem::path(model) / "model.safetensors").string()}};
  if (!layout.empty())
    files.emplace_back("--layout", layout);
  return files;
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
      "stop-after-pass-num", po::value(&stopAfterPassNum), "run only the first N passes (N >= 0)")(
      "time-passes", po::bool_switch(&timePasses), "report the time each pass took")(
      "dump-dir", po::value(&dumpDir), "write the IR before and after each pass to numbered files")(
      "pass-option", po::value(&settings)->composing(), "a pass setting, key=value (repeatable)")(
      "dtype", po::value(&dtype),
      "element type of matmul inputs: f32 (default) or bf16 (f32 accumulation)");
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

// Whether `a` and `b` name one file: the same device and inode, however they are spelled.
bool sameFile(const std::string &a, const std::string &b) {
  struct stat sa {};
  struct stat sb {};
  return !a.empty() && !b.empty() && ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 &&
         sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

} // namespace

Status checkNotAnInput(const std::string &flag, const std::string &output,
                       const std::vector<std::pair<std::string, std::string>> &inputs) {
  if (output.empty() || output == "-")
    return Status::ok();
  // Devices such as /dev/null are written in place, never replaced: writing to one cannot lose an
  // input, and a model read from /dev/stdin is no reason to refuse -o /dev/stdout.
  struct stat st {};
  if (::stat(output.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
    return Status::ok();
  for (const auto &[what, input] : inputs)
    if (sameFile(output, input))
      return makeError(Loc::inFile(flag),
                       "'{}' is the same file as {} ('{}'): refusing to overwrite an input", output,
                       what, input);
  return Status::ok();
}

Status checkWritable(const std::string &output) {
  if (output.empty() || output == "-")
    return Status::ok();
  Loc at = Loc::inFile(output);
  struct stat st {};
  if (::stat(output.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return makeError(at, "cannot create output file: it is a directory");
    // A device or FIFO is written in place (AtomicFile), so it is the file that must be writable.
    if (!S_ISREG(st.st_mode)) {
      if (::access(output.c_str(), W_OK) != 0)
        return makeError(at, "cannot open output file: {}", std::strerror(errno));
      return Status::ok();
    }
  }
  // A regular file is written beside itself and renamed over: its folder must be writable.
  std::filesystem::path parent = std::filesystem::path(output).parent_path();
  std::string folder = parent.empty() ? "." : parent.string();
  struct stat fs {};
  if (::stat(folder.c_str(), &fs) != 0)
    return makeError(at, "cannot create output file: no folder '{}'", folder);
  if (!S_ISDIR(fs.st_mode))
    return makeError(at, "cannot create output file: '{}' is not a folder", folder);
  if (::access(folder.c_str(), W_OK | X_OK) != 0)
    return makeError(at, "cannot create output file: folder '{}' is not writable", folder);
  return Status::ok();
}

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

Expected<passes::PassSetting> parseDTypeFlag(const std::string &value) {
  Expected<passes::PassSetting> setting = passes::PassSetting::parse("dtype", value);
  if (!setting)
    return makeError(Loc::inFile("--dtype"), "expected f32 or bf16, got '{}'", value);
  return setting;
}

Status PassFlags::check(const po::variables_map &vm) {
  VITC_TRY(toOptions());
  // -1, the default, means every pass; given on the command line it is a mistake.
  if (vm.count("stop-after-pass-num") && stopAfterPassNum < 0)
    return makeError(Loc::inFile("--stop-after-pass-num"),
                     "expected a number of passes >= 0, got {}", stopAfterPassNum);
  parsed_.clear();
  // Before the --pass-option settings, so that one of those given with it wins.
  if (!dtype.empty()) {
    VITC_ASSIGN(passes::PassSetting setting, parseDTypeFlag(dtype));
    parsed_.push_back(std::move(setting));
  }
  for (const std::string &s : settings) {
    size_t eq = s.find('=');
    if (eq == std::string::npos)
      return makeError(Loc::inFile("--pass-option"), "expected KEY=VALUE, got '{}'", s);
    Expected<passes::PassSetting> setting = passes::PassSetting::parse(
        std::string_view(s).substr(0, eq), std::string_view(s).substr(eq + 1));
    if (!setting)
      return Error(Loc::inFile("--pass-option"), setting.error().message());
    parsed_.push_back(std::move(*setting));
  }
  return Status::ok();
}

bool PassFlags::sets(std::string_view key) const {
  for (const passes::PassSetting &s : parsed_)
    if (s.key() == key)
      return true;
  return false;
}

void PassFlags::applyTo(passes::PassOptions &options) const {
  for (const passes::PassSetting &s : parsed_)
    s.applyTo(options);
}

Expected<ModelLayout> readModelLayout(const ModelOptions &options, const PassFlags *flags) {
  ModelLayout layout;
  Loc meshLoc = Loc::inFile("--mesh");
  if (!options.mesh.empty()) {
    VITC_ASSIGN(layout.mesh, ir::parseMesh(options.mesh, meshLoc));
  }
  if (!options.layout.empty()) {
    VITC_ASSIGN(passes::LayoutFile file, passes::readLayoutFile(options.layout));
    layout.passOptions.layout = file.layout;
    if (!file.mesh.empty()) {
      VITC_ASSIGN(ir::Mesh fromFile, ir::parseMesh(file.mesh, Loc::inFile(options.layout)));
      if (layout.mesh && !(*layout.mesh == fromFile))
        return makeError(meshLoc, "--mesh {} differs from the layout's mesh ({}) in {}",
                         layout.mesh->str(), fromFile.str(), options.layout);
      layout.mesh = fromFile;
      meshLoc = Loc::inFile(options.layout);
    }
  }
  // Over the layout file's settings, so that a --pass-option given with it wins.
  if (flags)
    flags->applyTo(layout.passOptions);
  if (layout.mesh)
    layout.passOptions.meshLoc = meshLoc;
  return layout;
}

Expected<int64_t> microbatchSize(int64_t batch, const ModelOptions &options,
                                 const ModelLayout &layout, const PassFlags *flags) {
  // Micro-batches, and the devices of the data axis that split each; a --pass-option overrides the
  // layout file's setting, for the split as for the passes.
  int64_t micro = layout.passOptions.layout.microbatches, data = 1;
  if (micro <= 1)
    return batch;
  const std::string &dataAxis = layout.passOptions.layout.dataAxis;
  if (layout.mesh && layout.mesh->axisIndex(dataAxis) >= 0)
    data = layout.mesh->axisSize(layout.mesh->axisIndex(dataAxis));
  Loc from =
      Loc::inFile(flags && flags->sets("layout.microbatches") ? "--pass-option" : options.layout);
  // Micro-batches run one after another, each split over the data axis: both must divide.
  if (batch % micro != 0) {
    std::string overData = data > 1 ? fmt::format("; each also runs over {}={}, so the batch must "
                                                  "be a multiple of {}",
                                                  dataAxis, data, micro * data)
                                    : "";
    return makeError(from, "the layout runs {} micro-batches, which do not divide the batch ({}){}",
                     micro, batch, overData);
  }
  if ((batch / micro) % data != 0)
    return makeError(from,
                     "the layout runs {} micro-batches of {} image{} over {}={}, which does "
                     "not divide {}: the batch ({}) must be a multiple of {}",
                     micro, batch / micro, batch / micro == 1 ? "" : "s", dataAxis, data,
                     batch / micro, batch, micro * data);
  return batch / micro;
}

Expected<frontend::LoadedModel> loadModelOnMesh(const ModelOptions &options, ModelLayout &layout) {
  frontend::LoadOptions lo;
  lo.batch = options.batch;
  VITC_ASSIGN(frontend::LoadedModel m, frontend::loadModel(options.model, lo));
  if (!layout.mesh) {
    if (m.format == frontend::ModelFormat::IrText)
      layout.passOptions.meshLoc = Loc::inFile(m.path); // the mesh written in the IR's header
    return m;
  }
  if (m.format == frontend::ModelFormat::IrText && !(*layout.mesh == m.module->mesh))
    return makeError(layout.passOptions.meshLoc,
                     "the IR in {} is already for mesh ({}); it cannot be changed to ({})", m.path,
                     m.module->mesh.str(), layout.mesh->str());
  m.module->mesh = *layout.mesh;
  return m;
}

Expected<frontend::LoadedModel> loadModelOnMesh(const ModelOptions &options, const PassFlags *flags,
                                                passes::PassOptions *passOptions) {
  VITC_ASSIGN(ModelLayout layout, readModelLayout(options, flags));
  VITC_ASSIGN(frontend::LoadedModel m, loadModelOnMesh(options, layout));
  if (passOptions)
    *passOptions = layout.passOptions;
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
    exit = usageError(std::string(e.what()) + " (see --help)");
    return false;
  }
  return true;
}

// Prints the passes' remarks: one summary line per pass, or with --remarks[=PASS,...] every
// remark (of those passes), as LLVM's -Rpass= does.
void printRemarks(const std::vector<std::string> &remarks, const std::string &which,
                  const std::set<std::string> &passes) {
  if (which.empty()) {
    for (const passes::RemarkSummary &s : passes::summarizeRemarks(remarks)) {
      std::cerr << "remark: " << s.line;
      if (s.count > 1 && !s.pass.empty())
        std::cerr << fmt::format(" [{} remarks; --remarks={} lists them]", s.count, s.pass);
      std::cerr << "\n";
    }
    return;
  }
  for (const std::string &r : remarks)
    if (passes.empty() || passes.count(std::string(passes::remarkPass(r))))
      std::cerr << "remark: " << r << "\n";
}

} // namespace vitc::tools
