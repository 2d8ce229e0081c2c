/*
 * Single purpose: let the adapter 2.x scheduler run KCL's multilang record processor.
 *
 * StreamsSchedulerFactory.createScheduler() rejects any processor that is not a
 * DynamoDBStreamsShardRecordProcessor. This factory wraps each MultiLangShardRecordProcessor (one child
 * process per shard, speaking the KCL 3 JSON-lines protocol) in one. Records pass through unchanged:
 * each is a DynamoDBStreamsClientRecord whose data is the stream record's JSON, so the child sees
 * exactly what the adapter produces.
 *
 * Thread-safety: the factory is stateless; KCL calls each processor from one thread at a time.
 */
package consumer.kcl;

import com.amazonaws.services.dynamodbv2.streamsadapter.model.DynamoDBStreamsProcessRecordsInput;
import com.amazonaws.services.dynamodbv2.streamsadapter.processor.DynamoDBStreamsShardRecordProcessor;
import java.util.ArrayList;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;
import software.amazon.kinesis.retrieval.KinesisClientRecord;

public final class DynamoDBStreamsMultiLangProcessorFactory implements ShardRecordProcessorFactory {
    private final ShardRecordProcessorFactory multiLangFactory;

    public DynamoDBStreamsMultiLangProcessorFactory(ShardRecordProcessorFactory multiLangFactory) {
        this.multiLangFactory = multiLangFactory;
    }

    @Override
    public ShardRecordProcessor shardRecordProcessor() {
        // Creating a MultiLangShardRecordProcessor starts no process: the child starts at initialize().
        return new Processor(multiLangFactory.shardRecordProcessor());
    }

    /** Delegates every lifecycle call to the multilang processor. */
    static final class Processor implements DynamoDBStreamsShardRecordProcessor {
        private final ShardRecordProcessor delegate;

        Processor(ShardRecordProcessor delegate) {
            this.delegate = delegate;
        }

        @Override
        public void initialize(InitializationInput input) {
            delegate.initialize(input);
        }

        /** KCL calls this one; the records are already DynamoDBStreamsClientRecords. */
        @Override
        public void processRecords(ProcessRecordsInput input) {
            delegate.processRecords(input);
        }

        @Override
        public void processRecords(DynamoDBStreamsProcessRecordsInput input) {
            delegate.processRecords(ProcessRecordsInput.builder()
                    .records(new ArrayList<KinesisClientRecord>(input.records()))
                    .checkpointer(input.checkpointer())
                    .cacheEntryTime(input.cacheEntryTime())
                    .cacheExitTime(input.cacheExitTime())
                    .isAtShardEnd(input.isAtShardEnd())
                    .millisBehindLatest(input.millisBehindLatest())
                    .childShards(input.childShards())
                    .build());
        }

        @Override
        public void leaseLost(LeaseLostInput input) {
            delegate.leaseLost(input);
        }

        @Override
        public void shardEnded(ShardEndedInput input) {
            delegate.shardEnded(input);
        }

        @Override
        public void shutdownRequested(ShutdownRequestedInput input) {
            delegate.shutdownRequested(input);
        }
    }
}
