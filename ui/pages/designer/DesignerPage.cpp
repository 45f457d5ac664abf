// Designer page wiring. Text is the source of truth: the form shows the loader's resolved config
// and writes single keys back into the text (YamlKeyEdit), so comments and layout survive.
#include "ui/pages/designer/DesignerPage.h"

#include <QAction>
#include <QComboBox>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QListWidget>
#include <QMessageBox>
#include <QPushButton>
#include <QRegularExpression>
#include <QSaveFile>
#include <QScrollArea>
#include <QSettings>
#include <QSplitter>
#include <QStyle>
#include <QTabWidget>
#include <QTextBlock>
#include <QTimer>
#include <QToolBar>
#include <QToolButton>
#include <QTreeWidget>
#include <QVBoxLayout>

#include "cluster/workspace/Workspace.h"
#include "engine/config/schema.h"
#include "ui/Theme.h"
#include "ui/pages/designer/ConfigEditor.h"
#include "ui/pages/designer/ConfigForm.h"
#include "ui/pages/designer/EstimatorPanel.h"
#include "ui/pages/designer/YamlKeyEdit.h"

namespace fathom::ui {
namespace cfg = fathom::config;

namespace {
QString qs(const std::string& s) { return QString::fromStdString(s); }
constexpr int kLineRole = Qt::UserRole + 1;
constexpr int kColumnRole = Qt::UserRole + 2;
constexpr int kLocalRole = Qt::UserRole + 3;  // the problem is in this document
}  // namespace

DesignerPage::DesignerPage(cluster::Workspace* workspace, QWidget* parent) : QWidget(parent), m_workspace(workspace) {
  buildUi();
  m_debounce = new QTimer(this);
  m_debounce->setSingleShot(true);
  m_debounce->setInterval(300);
  connect(m_debounce, &QTimer::timeout, this, &DesignerPage::validateNow);
  connect(m_editor, &QPlainTextEdit::textChanged, this, &DesignerPage::onTextChanged);
  connect(m_editor->document(), &QTextDocument::modificationChanged, this, &DesignerPage::updateTitle);
  connect(m_form, &ConfigForm::valueEdited, this, &DesignerPage::applyFormEdit);
  connect(m_form, &ConfigForm::resetRequested, this, &DesignerPage::applyReset);
  connect(m_estimator, &EstimatorPanel::applyOverrides, this, &DesignerPage::applyOverrides);
  newDocument();
}

void DesignerPage::buildUi() {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(0);

  auto* bar = new QToolBar(this);
  bar->setIconSize(QSize(16, 16));
  bar->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
  QAction* actNew = bar->addAction(style()->standardIcon(QStyle::SP_FileIcon), tr("New"), this, [this] {
    if (maybeSave()) newDocument(m_preset->currentData().toString().isEmpty() ? QStringLiteral("demo") : m_preset->currentData().toString());
  });
  actNew->setToolTip(tr("New config extending the selected preset"));
  bar->addAction(style()->standardIcon(QStyle::SP_DialogOpenButton), tr("Open…"), this, [this] {
    if (!maybeSave()) return;
    const QString dir = m_path.isEmpty() ? (m_workspace ? m_workspace->projectsDir() : QDir::homePath()) : QFileInfo(m_path).absolutePath();
    const QString path = QFileDialog::getOpenFileName(this, tr("Open run config"), dir, tr("YAML configs (*.yaml *.yml);;All files (*)"));
    if (!path.isEmpty()) openFile(path);
  });
  bar->addAction(style()->standardIcon(QStyle::SP_DialogSaveButton), tr("Save"), this, [this] { save(); });
  bar->addAction(tr("Save As…"), this, [this] { saveAs(); });
  bar->addSeparator();
  bar->addWidget(new QLabel(tr(" Preset "), bar));
  m_preset = new QComboBox(bar);
  m_preset->setToolTip(tr("The preset this config extends (its `extends:` key)"));
  m_preset->setMinimumContentsLength(14);
  m_preset->addItem(tr("(none)"), QString());
  for (const std::string& name : cfg::preset_names()) m_preset->addItem(qs(name), qs(name));
  bar->addWidget(m_preset);
  connect(m_preset, &QComboBox::activated, this, &DesignerPage::onPresetChosen);
  auto* spacer = new QWidget(bar);
  spacer->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Preferred);
  bar->addWidget(spacer);
  auto* launch = new QPushButton(tr("Launch…"), bar);
  launch->setObjectName(QStringLiteral("launchButton"));
  launch->setDefault(true);
  launch->setToolTip(tr("Save and open the Launch dialog (Ctrl+R)"));
  launch->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_R));
  connect(launch, &QPushButton::clicked, this, &DesignerPage::requestLaunch);
  bar->addWidget(launch);
  layout->addWidget(bar);

  m_split = new QSplitter(Qt::Horizontal, this);
  m_split->setChildrenCollapsible(false);
  m_form = new ConfigForm(m_split);
  m_form->setMinimumWidth(300);

  m_centerSplit = new QSplitter(Qt::Vertical, m_split);
  m_centerSplit->setChildrenCollapsible(false);
  m_editor = new ConfigEditor(m_centerSplit);
  auto* problemsBox = new QWidget(m_centerSplit);
  auto* pl = new QVBoxLayout(problemsBox);
  pl->setContentsMargins(0, 4, 0, 0);
  pl->setSpacing(2);
  m_problemsHeader = new QLabel(problemsBox);
  pl->addWidget(m_problemsHeader);
  m_problems = new QListWidget(problemsBox);
  m_problems->setWordWrap(true);
  m_problems->setAlternatingRowColors(true);
  pl->addWidget(m_problems);
  connect(m_problems, &QListWidget::itemActivated, this, [this](QListWidgetItem* item) {
    if (item->data(kLocalRole).toBool()) m_editor->jumpTo(item->data(kLineRole).toInt(), item->data(kColumnRole).toInt());
  });
  connect(m_problems, &QListWidget::itemClicked, this, [this](QListWidgetItem* item) {
    if (item->data(kLocalRole).toBool()) m_editor->jumpTo(item->data(kLineRole).toInt(), item->data(kColumnRole).toInt());
  });
  m_centerSplit->setStretchFactor(0, 4);
  m_centerSplit->setStretchFactor(1, 1);

  m_side = new QTabWidget(m_split);
  auto* estScroll = new QScrollArea(m_side);
  estScroll->setWidgetResizable(true);
  estScroll->setFrameShape(QFrame::NoFrame);
  m_estimator = new EstimatorPanel(estScroll);
  estScroll->setWidget(m_estimator);
  m_side->addTab(estScroll, tr("Estimate"));
  auto* diffBox = new QWidget(m_side);
  auto* dl = new QVBoxLayout(diffBox);
  dl->setContentsMargins(4, 4, 4, 4);
  m_diffHeader = new QLabel(diffBox);
  m_diffHeader->setWordWrap(true);
  dl->addWidget(m_diffHeader);
  m_diff = new QTreeWidget(diffBox);
  m_diff->setColumnCount(3);
  m_diff->setHeaderLabels({tr("Key"), tr("Preset"), tr("This config")});
  m_diff->setRootIsDecorated(false);
  m_diff->setAlternatingRowColors(true);
  m_diff->header()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
  dl->addWidget(m_diff);
  connect(m_diff, &QTreeWidget::itemActivated, this, [this](QTreeWidgetItem* item) {
    const YamlKeyEdit::Location loc = YamlKeyEdit::find(text(), item->text(0));
    if (loc.found) m_editor->jumpTo(loc.keyLine + 1, loc.indent + 1);
  });
  m_side->addTab(diffBox, tr("Diff against preset"));

  m_split->addWidget(m_form);
  m_split->addWidget(m_centerSplit);
  m_split->addWidget(m_side);
  m_split->setStretchFactor(0, 3);
  m_split->setStretchFactor(1, 4);
  m_split->setStretchFactor(2, 3);
  m_split->setSizes({460, 560, 440});
  layout->addWidget(m_split, 1);
}

QString DesignerPage::text() const { return m_editor->toPlainText(); }

bool DesignerPage::isModified() const { return m_editor->document()->isModified(); }

QString DesignerPage::displayName() const {
  if (!m_path.isEmpty()) return m_path;
  // Untitled documents resolve relative paths against the projects folder, where Save puts them.
  const QString dir = m_workspace ? m_workspace->projectsDir() : QDir::currentPath();
  return QDir(dir).filePath(QStringLiteral("untitled.yaml"));
}

void DesignerPage::setText(const QString& t) {
  m_editor->setPlainText(t);
  validateNow();
}

void DesignerPage::newDocument(const QString& preset) {
  m_path.clear();
  const QString p = preset.isEmpty() ? QStringLiteral("demo") : preset;
  m_editor->setPlainText(QStringLiteral("# Run config: keys set here override the preset; hover a key in the form for its meaning.\n"
                                        "extends: %1\n").arg(p));
  m_editor->document()->setModified(false);
  validateNow();
  updateTitle();
}

bool DesignerPage::openFile(const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::ReadOnly)) {
    QMessageBox::warning(this, tr("Open run config"), tr("Cannot read %1: %2.").arg(QDir::toNativeSeparators(path), f.errorString()));
    return false;
  }
  m_path = QFileInfo(path).absoluteFilePath();
  m_editor->setPlainText(QString::fromUtf8(f.readAll()));
  m_editor->document()->setModified(false);
  validateNow();
  updateTitle();
  emit statusMessage(tr("Opened %1").arg(QDir::toNativeSeparators(m_path)));
  return true;
}

bool DesignerPage::saveTo(const QString& path) {
  QSaveFile f(path);
  if (!f.open(QIODevice::WriteOnly) || f.write(text().toUtf8()) < 0 || !f.commit()) {
    QMessageBox::warning(this, tr("Save run config"),
                         tr("Cannot write %1: %2.\nChoose another folder with Save As.").arg(QDir::toNativeSeparators(path), f.errorString()));
    return false;
  }
  const bool renamed = QFileInfo(path).absoluteFilePath() != m_path;
  m_path = QFileInfo(path).absoluteFilePath();
  m_editor->document()->setModified(false);
  if (renamed) validateNow();  // relative paths now resolve against the new folder
  updateTitle();
  emit statusMessage(tr("Saved %1").arg(QDir::toNativeSeparators(m_path)));
  return true;
}

bool DesignerPage::save() { return m_path.isEmpty() ? saveAs() : saveTo(m_path); }

bool DesignerPage::saveAs() {
  const QString dir = m_path.isEmpty() ? (m_workspace ? m_workspace->projectsDir() : QDir::homePath()) : QFileInfo(m_path).absolutePath();
  const QString suggested = m_path.isEmpty() ? QDir(dir).filePath(qs(m_result.config.run.name) + QStringLiteral(".yaml")) : m_path;
  QString path = QFileDialog::getSaveFileName(this, tr("Save run config"), suggested, tr("YAML configs (*.yaml *.yml)"));
  if (path.isEmpty()) return false;
  if (QFileInfo(path).suffix().isEmpty()) path += QStringLiteral(".yaml");
  return saveTo(path);
}

bool DesignerPage::maybeSave() {
  if (!isModified()) return true;
  const auto answer = QMessageBox::question(
      this, tr("Unsaved config"), tr("%1 has unsaved changes. Save them?").arg(m_path.isEmpty() ? tr("The new config") : QFileInfo(m_path).fileName()),
      QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel, QMessageBox::Save);
  if (answer == QMessageBox::Cancel) return false;
  if (answer == QMessageBox::Save) return save();
  return true;
}

void DesignerPage::updateTitle() {
  const QString name = m_path.isEmpty() ? tr("untitled.yaml") : QFileInfo(m_path).fileName();
  emit titleChanged(name + (isModified() ? QStringLiteral(" •") : QString()));
}

void DesignerPage::onTextChanged() {
  if (m_applyingForm) return;
  m_debounce->start();
}

void DesignerPage::validateNow() {
  m_debounce->stop();
  cfg::LoadOptions options;
  options.check_paths = true;
  const QString display = displayName();
  m_result = cfg::load_config_text(text().toStdString(), display.toStdString(), options);
  const std::string displayStd = display.toStdString();

  m_explicit.clear();
  for (const auto& [key, origin] : m_result.origins)
    if (origin.file == displayStd) m_explicit.insert(qs(key));

  QVector<Diagnostic> diags;
  m_problems->clear();
  auto addProblem = [&](const cfg::ConfigError& e, bool warning) {
    const bool local = e.file == displayStd;
    if (local) diags.push_back(Diagnostic{e.line, e.column, warning, qs(e.key_path), qs(e.rule), qs(e.fix)});
    QString where = local ? (e.line > 0 ? tr("line %1:%2").arg(e.line).arg(e.column) : tr("(no position)"))
                          : QStringLiteral("%1:%2:%3").arg(qs(e.file)).arg(e.line).arg(e.column);
    QString head = where + QStringLiteral("  ") + (e.key_path.empty() ? QString() : qs(e.key_path) + QStringLiteral(": ")) + qs(e.rule);
    auto* item = new QListWidgetItem(head + (e.fix.empty() ? QString() : QStringLiteral("\n   Fix: ") + qs(e.fix)), m_problems);
    item->setIcon(style()->standardIcon(warning ? QStyle::SP_MessageBoxWarning : QStyle::SP_MessageBoxCritical));
    item->setData(kLineRole, e.line);
    item->setData(kColumnRole, e.column);
    item->setData(kLocalRole, local && e.line > 0);
    item->setToolTip(qs(e.message()));
  };
  for (const auto& e : m_result.errors) addProblem(e, false);
  for (const auto& w : m_result.warnings) addProblem(w, true);
  m_editor->setDiagnostics(diags);
  const int ne = static_cast<int>(m_result.errors.size()), nw = static_cast<int>(m_result.warnings.size());
  if (ne == 0 && nw == 0) m_problemsHeader->setText(tr("✓ Valid: the engine will accept this config."));
  else m_problemsHeader->setText(tr("%n error(s)", nullptr, ne) + QStringLiteral(", ") + tr("%n warning(s)", nullptr, nw) +
                                 tr(" — click one to jump to it"));
  QPalette hp = m_problemsHeader->palette();
  hp.setColor(QPalette::WindowText, Theme::instance()->color(ne ? QStringLiteral("status.failed")
                                                                : nw ? QStringLiteral("status.stopped") : QStringLiteral("status.completed")));
  m_problemsHeader->setPalette(hp);

  m_form->setConfig(m_result.config, m_explicit);
  m_estimator->setConfig(m_result.config, m_result.ok());
  updatePresetCombo();
  updateDiff();
}

void DesignerPage::applyFormEdit(const QString& path, const QString& yamlValue) {
  bool fallback = false;
  QString error;
  const QString next = YamlKeyEdit::setValue(text(), path, yamlValue, &fallback, &error);
  if (!error.isEmpty()) {
    emit statusMessage(error);
    return;
  }
  m_applyingForm = true;
  m_editor->replaceTextMinimal(next);
  m_applyingForm = false;
  if (fallback) emit statusMessage(tr("Rewrote the YAML to set %1 (flow-style mapping); comments were not kept").arg(path));
  const YamlKeyEdit::Location loc = YamlKeyEdit::find(next, path);
  if (loc.found) {
    // Show the edited line without stealing focus from the form.
    QTextCursor c(m_editor->document()->findBlockByNumber(loc.keyLine));
    m_editor->setTextCursor(c);
    m_editor->ensureCursorVisible();
  }
  validateNow();
}

void DesignerPage::applyReset(const QString& path) {
  m_applyingForm = true;
  m_editor->replaceTextMinimal(YamlKeyEdit::removeKey(text(), path));
  m_applyingForm = false;
  validateNow();
}

void DesignerPage::applyOverrides(const QStringList& overrides) {
  QString t = text();
  for (const QString& o : overrides) {
    const int eq = o.indexOf(QLatin1Char('='));
    if (eq <= 0) continue;
    t = YamlKeyEdit::setValue(t, o.left(eq).trimmed(), o.mid(eq + 1).trimmed());
  }
  m_applyingForm = true;
  m_editor->replaceTextMinimal(t);
  m_applyingForm = false;
  validateNow();
  emit statusMessage(tr("Applied %1").arg(overrides.join(QStringLiteral(", "))));
}

void DesignerPage::onPresetChosen(int index) {
  const QString name = m_preset->itemData(index).toString();
  if (name == QLatin1String("@file")) return;
  const QString next = name.isEmpty() ? YamlKeyEdit::removeKey(text(), QStringLiteral("extends"))
                                      : YamlKeyEdit::setValue(text(), QStringLiteral("extends"), name);
  m_applyingForm = true;
  m_editor->replaceTextMinimal(next);
  m_applyingForm = false;
  validateNow();
}

void DesignerPage::updatePresetCombo() {
  const QString ext = YamlKeyEdit::inlineValue(text(), QStringLiteral("extends"));
  const int fileItem = m_preset->findData(QStringLiteral("@file"));
  if (fileItem >= 0) m_preset->removeItem(fileItem);
  int i = m_preset->findData(ext);
  if (i < 0) {
    m_preset->addItem(tr("file: %1").arg(ext), QStringLiteral("@file"));
    i = m_preset->count() - 1;
  }
  QSignalBlocker block(m_preset);
  m_preset->setCurrentIndex(i);
}

void DesignerPage::updateDiff() {
  m_diff->clear();
  const QString ext = YamlKeyEdit::inlineValue(text(), QStringLiteral("extends"));
  const std::string presetText = ext.isEmpty() ? std::string() : cfg::preset_text(ext.toStdString());
  cfg::RunConfig base;  // schema defaults when there is no preset
  QString baseName = tr("the schema defaults");
  if (!presetText.empty()) {
    cfg::LoadOptions o;
    o.check_paths = false;
    base = cfg::load_config_text(presetText, "preset:" + ext.toStdString(), o).config;
    baseName = tr("preset %1").arg(ext);
  } else if (!ext.isEmpty()) {
    m_diffHeader->setText(tr("This config extends the file %1; the diff compares it with the schema defaults.").arg(ext));
  }
  int n = 0;
  const QColor changed = Theme::instance()->color(QStringLiteral("diff.changed"));
  for (const cfg::KeyInfo& k : cfg::schema_keys()) {
    const std::string a = cfg::value_to_string(cfg::get_value(base, k));
    const std::string b = cfg::value_to_string(cfg::get_value(m_result.config, k));
    if (a == b) continue;
    auto* item = new QTreeWidgetItem(m_diff, {qs(k.path), qs(a), qs(b)});
    item->setToolTip(0, qs(k.description));
    item->setBackground(2, changed);
    ++n;
  }
  if (presetText.empty() && !ext.isEmpty()) return;
  m_diffHeader->setText(n == 0 ? tr("Same values as %1.").arg(baseName)
                               : tr("%n key(s) differ from %1 (double-click to find one in the YAML).", nullptr, n).arg(baseName));
}

void DesignerPage::setLocalDevices(const QList<EngineDevice>& devices) { m_estimator->setLocalDevices(devices); }

QString DesignerPage::uniqueProjectPath(const QString& baseName) const {
  QString safe = baseName;
  safe.replace(QRegularExpression(QStringLiteral("[^A-Za-z0-9._-]+")), QStringLiteral("-"));
  if (safe.isEmpty()) safe = QStringLiteral("run");
  const QDir dir(m_workspace ? m_workspace->projectsDir() : QDir::currentPath());
  QString path = dir.filePath(safe + QStringLiteral(".yaml"));
  for (int i = 2; QFileInfo::exists(path); ++i) path = dir.filePath(QStringLiteral("%1-%2.yaml").arg(safe).arg(i));
  return path;
}

void DesignerPage::requestLaunch() {
  validateNow();
  if (!m_result.ok()) {
    const cfg::ConfigError& e = m_result.errors.front();
    QMessageBox::warning(this, tr("Launch"),
                         tr("The config has %n error(s); the engine would refuse it.\n\nFirst: %1\n\nFix them (see the list under the editor) and launch again.",
                            nullptr, static_cast<int>(m_result.errors.size()))
                             .arg(qs(e.message())));
    if (e.file == displayName().toStdString() && e.line > 0) m_editor->jumpTo(e.line, e.column);
    return;
  }
  if (m_path.isEmpty()) {
    QDir().mkpath(m_workspace ? m_workspace->projectsDir() : QDir::currentPath());
    if (!saveTo(uniqueProjectPath(qs(m_result.config.run.name)))) return;
  } else if (isModified() && !save()) {
    return;
  }
  emit launchRequested(m_path);
}

void DesignerPage::saveState(QSettings& s) const {
  s.setValue(QStringLiteral("designer/split"), m_split->saveState());
  s.setValue(QStringLiteral("designer/centerSplit"), m_centerSplit->saveState());
  s.setValue(QStringLiteral("designer/file"), m_path);
  s.setValue(QStringLiteral("designer/sideTab"), m_side->currentIndex());
  QStringList open;
  for (const QString& p : m_form->sectionPaths())
    if (m_form->isSectionExpanded(p)) open << p;
  s.setValue(QStringLiteral("designer/openSections"), open);
}

void DesignerPage::restoreState(const QSettings& s) {
  m_split->restoreState(s.value(QStringLiteral("designer/split")).toByteArray());
  m_centerSplit->restoreState(s.value(QStringLiteral("designer/centerSplit")).toByteArray());
  m_side->setCurrentIndex(s.value(QStringLiteral("designer/sideTab"), 0).toInt());
  if (s.contains(QStringLiteral("designer/openSections"))) {
    const QStringList open = s.value(QStringLiteral("designer/openSections")).toStringList();
    for (const QString& p : m_form->sectionPaths()) m_form->setSectionExpanded(p, open.contains(p));
  }
  const QString file = s.value(QStringLiteral("designer/file")).toString();
  if (!file.isEmpty() && QFileInfo::exists(file)) openFile(file);
}

}  // namespace fathom::ui
