// fathom: the workbench executable. Only wires services into the main window: parses options,
// opens the workspace, creates the job queue (which re-attaches to runs that kept going) and
// shows the MainWindow. `--headless-demo` runs the default project without any display.
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QMessageBox>
#include <QTextStream>

#include <cstring>

#include "cluster/jobs/HeadlessDemo.h"
#include "cluster/jobs/JobQueue.h"
#include "cluster/workspace/Workspace.h"
#include "ui/MainWindow.h"
#include "ui/ScreenshotTour.h"

namespace {

void setIdentity() {
  QCoreApplication::setOrganizationName(QStringLiteral("Fathom"));
  QCoreApplication::setApplicationName(QStringLiteral("Fathom"));
  QCoreApplication::setApplicationVersion(QStringLiteral(FATHOM_VERSION));
}

bool hasArg(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return true;
  return false;
}

void addOptions(QCommandLineParser& parser, QCommandLineOption& shots) {
  parser.setApplicationDescription(QStringLiteral("Fathom: design, launch and watch LLM training runs."));
  parser.addHelpOption();
  parser.addOption({QStringLiteral("version"), QStringLiteral("Print the version and exit.")});
  parser.addOption({QStringLiteral("headless-demo"),
                    QStringLiteral("Train the default project without a window, printing progress (see --steps).")});
  parser.addOption({QStringLiteral("steps"), QStringLiteral("With --headless-demo: train N steps."), QStringLiteral("N")});
  parser.addOption({QStringLiteral("workspace"),
                    QStringLiteral("Workspace directory (runs/, projects/, workspace.db); default $FATHOM_WORKSPACE or ~/.local/share/fathom."),
                    QStringLiteral("DIR")});
  shots.setFlags(QCommandLineOption::HiddenFromHelp);
  parser.addOption(shots);
}

}  // namespace

int main(int argc, char** argv) {
  // Decided before any QApplication exists: these must work without a display.
  if (hasArg(argc, argv, "--version")) {
    QTextStream(stdout) << "fathom " << FATHOM_VERSION << " (Qt " << qVersion() << ")\n";
    return 0;
  }
  if (hasArg(argc, argv, "--headless-demo")) {
    QCoreApplication app(argc, argv);
    setIdentity();
    return fathom::cluster::HeadlessDemo::run(app.arguments());
  }

  QCommandLineOption shots(QStringLiteral("screenshot-dir"), QStringLiteral("Write screenshots of every page and quit."),
                           QStringLiteral("DIR"));
  if (hasArg(argc, argv, "--help") || hasArg(argc, argv, "-h") || hasArg(argc, argv, "--help-all")) {
    QCoreApplication app(argc, argv);  // help needs no display either
    setIdentity();
    QCommandLineParser parser;
    addOptions(parser, shots);
    parser.process(app);  // prints the help and exits
    return 0;
  }
  // Without a display Qt would abort with a plugin error; say what to do instead.
  if (qEnvironmentVariableIsEmpty("DISPLAY") && qEnvironmentVariableIsEmpty("WAYLAND_DISPLAY") &&
      qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) {
    QTextStream(stderr) << "fathom: no display (DISPLAY and WAYLAND_DISPLAY are unset). Start it from a desktop session, "
                           "under xvfb-run, or train the default project without a window: fathom --headless-demo --steps 200\n";
    return 2;
  }

  QApplication app(argc, argv);
  setIdentity();
  QCommandLineParser parser;
  addOptions(parser, shots);
  parser.process(app);

  const QString dir = parser.isSet(QStringLiteral("workspace")) ? QDir(parser.value(QStringLiteral("workspace"))).absolutePath()
                                                                : fathom::cluster::Workspace::defaultDir();
  fathom::cluster::Workspace workspace;
  QString error;
  if (!workspace.open(dir, &error)) {
    QMessageBox::critical(nullptr, QStringLiteral("Fathom"),
                          QStringLiteral("Cannot open the workspace %1:\n%2\n\nStart Fathom with --workspace DIR to use another folder.")
                              .arg(QDir::toNativeSeparators(dir), error));
    return 1;
  }
  workspace.ensureDefaultProject();
  fathom::cluster::JobQueue queue(&workspace);
  fathom::ui::MainWindow window(&workspace, &queue);
  window.show();

  std::unique_ptr<fathom::ui::ScreenshotTour> tour;
  if (parser.isSet(shots)) {
    tour = std::make_unique<fathom::ui::ScreenshotTour>(&window, &workspace, &queue, parser.value(shots));
    tour->start();
  }
  return app.exec();
}
