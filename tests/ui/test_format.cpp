// Units and precision as the workbench shows numbers (STYLE.md: 1.23 GiB, 512.4K tok/s, 43.1% MFU),
// and the parsing of `fathom-engine devices --json` for the status bar and the Launch dialog.
#include <QtTest>

#include "ui/DeviceProbe.h"
#include "ui/Format.h"

using namespace fathom::ui;

class TestFormat : public QObject {
  Q_OBJECT
 private slots:
  void units() {
    QCOMPARE(formatBytes(512), QStringLiteral("512 B"));
    QCOMPARE(formatBytes(1.23 * 1024 * 1024 * 1024), QStringLiteral("1.23 GiB"));
    QCOMPARE(formatBytes(3 * 1024 * 1024), QStringLiteral("3.00 MiB"));
    QCOMPARE(formatSi(512400), QStringLiteral("512.4K"));
    QCOMPARE(formatSi(950), QStringLiteral("950"));
    QCOMPARE(formatSi(1.24e9), QStringLiteral("1.2G"));
    QCOMPARE(formatTokensPerSecond(512400), QStringLiteral("512.4K tok/s"));
    QCOMPARE(formatFraction(0.431), QStringLiteral("43.1%"));
    QCOMPARE(formatDuration(4.2), QStringLiteral("4.2s"));
    QCOMPARE(formatDuration(75), QStringLiteral("1m 15s"));
    QCOMPARE(formatDuration(3723), QStringLiteral("1h 02m"));
    QCOMPARE(formatDuration(-1), QStringLiteral("—"));
    QCOMPARE(formatValue(3.14159), QStringLiteral("3.142"));
    QCOMPARE(formatValue(NAN), QStringLiteral("—"));
    QCOMPARE(formatSmall(3e-4), QStringLiteral("3.00e-04"));
  }

  void parseDevices() {
    QList<EngineDevice> devices;
    QString error;
    const QByteArray json = R"([{"index":0,"kind":"cpu","memory_total":135148564480,"name":"CPU","threads":16},
        {"index":0,"kind":"cuda","memory_total":150754820096,"name":"NVIDIA H200","uuid":"GPU-acd8"}])";
    QVERIFY2(DeviceProbe::parse(json, &devices, &error), qPrintable(error));
    QCOMPARE(devices.size(), 2);
    QCOMPARE(devices[0].id(), QStringLiteral("cpu"));
    QCOMPARE(devices[0].threads, 16);
    QCOMPARE(devices[1].id(), QStringLiteral("cuda:0"));
    QCOMPARE(devices[1].name, QStringLiteral("NVIDIA H200"));
    QCOMPARE(devices[1].memoryTotal, Q_INT64_C(150754820096));
    QVERIFY(!DeviceProbe::parse("cuda: not json", &devices, &error));
    QVERIFY(error.contains(QStringLiteral("unexpected output")));
    QVERIFY(!DeviceProbe::parse("{\"kind\":\"cpu\"}", &devices, &error));  // an object, not a list
  }
};

QTEST_APPLESS_MAIN(TestFormat)
#include "test_format.moc"
