/*
 * The wrapper must hand the multilang processor exactly what the adapter delivers: the DynamoDB
 * stream records (whose data is the record's JSON), the checkpointer and the lag, and every lifecycle
 * call, in order. A dropped call would leave a child waiting; a changed record would change what
 * the child indexes.
 */
package consumer.kcl;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.amazonaws.services.dynamodbv2.streamsadapter.adapter.DynamoDBStreamsClientRecord;
import com.amazonaws.services.dynamodbv2.streamsadapter.model.DynamoDBStreamsProcessRecordsInput;
import com.amazonaws.services.dynamodbv2.streamsadapter.processor.DynamoDBStreamsShardRecordProcessor;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import software.amazon.awssdk.services.dynamodb.model.AttributeValue;
import software.amazon.awssdk.services.dynamodb.model.OperationType;
import software.amazon.awssdk.services.dynamodb.model.Record;
import software.amazon.awssdk.services.dynamodb.model.StreamRecord;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.processor.ShardRecordProcessor;

class DynamoDBStreamsMultiLangProcessorFactoryTest {

    /** Stands for the multilang processor (which would start a child process): records each call. */
    static final class Recording implements ShardRecordProcessor {
        final List<Object> calls = new ArrayList<>();

        @Override public void initialize(InitializationInput input) { calls.add(input); }
        @Override public void processRecords(ProcessRecordsInput input) { calls.add(input); }
        @Override public void leaseLost(LeaseLostInput input) { calls.add(input); }
        @Override public void shardEnded(ShardEndedInput input) { calls.add(input); }
        @Override public void shutdownRequested(ShutdownRequestedInput input) { calls.add(input); }
    }

    private static DynamoDBStreamsClientRecord streamRecord() {
        return DynamoDBStreamsClientRecord.fromRecord(Record.builder()
                .eventID("e1").eventName(OperationType.INSERT).eventSource("aws:dynamodb").awsRegion("us-east-1")
                .dynamodb(StreamRecord.builder()
                        .sequenceNumber("1100000000017454423009")
                        .approximateCreationDateTime(Instant.ofEpochSecond(1_700_000_000))
                        .keys(Map.of("pk", AttributeValue.fromS("order-1")))
                        .newImage(Map.of("pk", AttributeValue.fromS("order-1"), "n", AttributeValue.fromN("12.5")))
                        .sizeBytes(40L).streamViewType("NEW_AND_OLD_IMAGES").build())
                .build());
    }

    @Test
    void theAdaptersRecordsReachTheMultilangProcessorUnchanged() {
        Recording multilang = new Recording();
        DynamoDBStreamsShardRecordProcessor processor = (DynamoDBStreamsShardRecordProcessor)
                new DynamoDBStreamsMultiLangProcessorFactory(() -> multilang).shardRecordProcessor();
        DynamoDBStreamsClientRecord record = streamRecord();

        processor.processRecords(DynamoDBStreamsProcessRecordsInput.builder()
                .records(List.of(record)).millisBehindLatest(250L).isAtShardEnd(false).build());

        ProcessRecordsInput seen = (ProcessRecordsInput) multilang.calls.get(0);
        assertEquals(List.of(record), seen.records());
        assertEquals(250L, seen.millisBehindLatest());
        String json = StandardCharsets.UTF_8.decode(seen.records().get(0).data()).toString();
        assertTrue(json.contains("\"SequenceNumber\":\"1100000000017454423009\""), json);
        assertTrue(json.contains("\"NewImage\""), json);
    }

    @Test
    void everyLifecycleCallIsForwardedInOrder() {
        Recording multilang = new Recording();
        ShardRecordProcessor processor =
                new DynamoDBStreamsMultiLangProcessorFactory(() -> multilang).shardRecordProcessor();
        InitializationInput initialize = InitializationInput.builder().shardId("shardId-1").build();
        LeaseLostInput leaseLost = LeaseLostInput.builder().build();
        ShardEndedInput shardEnded = ShardEndedInput.builder().build();
        ShutdownRequestedInput shutdown = ShutdownRequestedInput.builder().build();

        processor.initialize(initialize);
        processor.shutdownRequested(shutdown);
        processor.leaseLost(leaseLost);
        processor.shardEnded(shardEnded);

        assertEquals(4, multilang.calls.size());
        assertSame(initialize, multilang.calls.get(0));
        assertSame(shutdown, multilang.calls.get(1));
        assertSame(leaseLost, multilang.calls.get(2));
        assertSame(shardEnded, multilang.calls.get(3));
    }
}
