// The Config Designer: a schema-generated form and a YAML editor kept in sync both ways,
// validation as you type (fathom_config's own loader, so the rules are the engine's), presets
// and `extends:`, a diff against the preset, the estimator, and file New/Open/Save.
#pragma once

#include <QSet>
#include <QWidget>

#include "engine/config/config.h"
#include "ui/DeviceProbe.h"

class QComboBox;
class QLabel;
class QListWidget;
class QSettings;
class QSplitter;
class QTimer;
class QTreeWidget;
class QTabWidget;
class QAction;

namespace fathom::cluster {
class Workspace;
}

namespace fathom::ui {

class ConfigEditor;
class ConfigForm;
class EstimatorPanel;

class DesignerPage : public QWidget {
  Q_OBJECT
 public:
  explicit DesignerPage(cluster::Workspace* workspace, QWidget* parent = nullptr);

  // File handling. open/save return false (after telling the user) on failure.
  bool openFile(const QString& path);
  bool save();
  bool saveAs();
  bool saveTo(const QString& path);
  void newDocument(const QString& preset = QStringLiteral("demo"));
  // Asks to save a modified document; false when the user cancelled.
  bool maybeSave();

  QString currentPath() const { return m_path; }
  bool isModified() const;
  QString text() const;
  // Replaces the document text (as if typed) and validates at once.
  void setText(const QString& text);
  // Validates now instead of after the typing pause.
  void validateNow();
  // The last validation.
  const config::LoadResult& lastResult() const { return m_result; }
  QString displayName() const;

  ConfigEditor* editor() const { return m_editor; }
  ConfigForm* form() const { return m_form; }
  EstimatorPanel* estimator() const { return m_estimator; }
  QListWidget* problems() const { return m_problems; }
  QTreeWidget* diffView() const { return m_diff; }
  QComboBox* presetCombo() const { return m_preset; }

  void setLocalDevices(const QList<EngineDevice>& devices);
  void saveState(QSettings& settings) const;
  void restoreState(const QSettings& settings);

  // Saves (an untitled document goes to the projects folder under its run name) and asks the
  // main window to open the Launch dialog. Refuses, with the reason, when the config has errors.
  void requestLaunch();

 signals:
  void launchRequested(const QString& configPath);
  void statusMessage(const QString& text);
  void titleChanged(const QString& title);

 private:
  void buildUi();
  void onTextChanged();
  void applyFormEdit(const QString& path, const QString& yamlValue);
  void applyReset(const QString& path);
  void applyOverrides(const QStringList& overrides);
  void onPresetChosen(int index);
  void updatePresetCombo();
  void updateDiff();
  void updateTitle();
  QString uniqueProjectPath(const QString& baseName) const;

  cluster::Workspace* m_workspace;
  QString m_path;
  config::LoadResult m_result;
  QSet<QString> m_explicit;
  QTimer* m_debounce;
  bool m_applyingForm = false;

  QComboBox* m_preset;
  ConfigForm* m_form;
  ConfigEditor* m_editor;
  QListWidget* m_problems;
  QLabel* m_problemsHeader;
  EstimatorPanel* m_estimator;
  QTreeWidget* m_diff;
  QLabel* m_diffHeader;
  QTabWidget* m_side;
  QSplitter* m_split;
  QSplitter* m_centerSplit;
};

}  // namespace fathom::ui
