/*
 * Single purpose: build KCL's multilang record processor around a ProcessBuilder we configure.
 *
 * MultiLangShardRecordProcessor's constructor is package-private, and KCL's own factory builds a bare
 * ProcessBuilder (inherited environment, stderr drained and logged at ERROR line by line). This class
 * sits in KCL's package only to reach that constructor; everything else about the child is decided
 * by consumer.kcl.ChildProcessFactory. The constructor's signature is checked when this compiles, so
 * a KCL upgrade that changes it fails the build, not a running daemon.
 *
 * Thread-safety: stateless.
 */
package software.amazon.kinesis.multilang;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.concurrent.ExecutorService;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;
import software.amazon.kinesis.processor.ShardRecordProcessor;

public final class ChildProcessRecordProcessors {
    private ChildProcessRecordProcessors() {}

    /** A processor that starts {@code child} at initialize() and speaks the JSON-lines protocol with it. */
    public static ShardRecordProcessor speakingTo(ProcessBuilder child, ExecutorService executor,
                                                  ObjectMapper mapper, MultiLangDaemonConfiguration configuration) {
        return new MultiLangShardRecordProcessor(child, executor, mapper, configuration);
    }
}
